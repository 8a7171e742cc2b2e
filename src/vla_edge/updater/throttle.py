"""A token bucket that caps download bandwidth, so a model update never starves the robot's own traffic.

Tokens are bytes. They accrue at ``rate`` per second up to ``burst``; a reader asks for
the bytes it is about to consume and waits until they are granted. The clock and the
sleep are injectable so tests can count grants in simulated time instead of timing.
"""

from __future__ import annotations

import time
from collections.abc import Callable

MIN_BURST = 4096
MIN_SLEEP_S = 0.001
"""Waits are at least this long: a shorter one may not move the clock at all (float rounding) and spin."""


class TokenBucket:
    """Grants at most ``burst + rate * elapsed`` bytes over any stretch of time."""

    def __init__(
        self,
        rate: float,
        burst: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError(f"a bandwidth cap must be positive bytes/s, got {rate}")
        self.rate = float(rate)
        self.burst = int(burst if burst is not None else max(MIN_BURST, rate / 4))
        """A quarter second of traffic: smooth enough for a link, coarse enough to cost little CPU."""
        self._clock = clock
        self._sleep = sleep
        self._tokens = float(self.burst)
        self._last = clock()

    def acquire(self, amount: int) -> None:
        """Block until ``amount`` bytes (at most ``burst``) may be consumed, then consume them."""
        if amount > self.burst:
            raise ValueError(f"cannot grant {amount} bytes at once from a bucket of {self.burst}")
        while True:
            now = self._clock()
            self._tokens = min(float(self.burst), self._tokens + (now - self._last) * self.rate)
            self._last = now
            if self._tokens >= amount:
                self._tokens -= amount
                return
            self._sleep(max(MIN_SLEEP_S, (amount - self._tokens) / self.rate))
