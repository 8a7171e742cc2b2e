"""The token bucket, in simulated time: bytes granted never outrun the rate (plus one burst)."""

from __future__ import annotations

import pytest

from vla_edge.updater.throttle import TokenBucket


class FakeTime:
    def __init__(self) -> None:
        self.now = 50.0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0
        self.now += seconds


def test_grants_never_exceed_rate_times_time_plus_burst() -> None:
    fake = FakeTime()
    bucket = TokenBucket(1000, burst=250, clock=fake.clock, sleep=fake.sleep)
    start, granted = fake.now, 0
    for amount in [100, 250, 1, 249, 77] * 20:
        bucket.acquire(amount)
        granted += amount
        assert granted <= 250 + 1000 * (fake.now - start) + 1e-6
    assert fake.now - start >= (granted - 250) / 1000


def test_an_idle_bucket_holds_one_burst_only() -> None:
    fake = FakeTime()
    bucket = TokenBucket(1000, burst=250, clock=fake.clock, sleep=fake.sleep)
    fake.now += 3600
    before = fake.now
    for _ in range(3):
        bucket.acquire(250)
    assert fake.now - before >= 0.5  # 250 from the full bucket, the other 500 at 1000 bytes/s


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="positive"):
        TokenBucket(0)
    with pytest.raises(ValueError, match="at once"):
        TokenBucket(1000, burst=10).acquire(11)
