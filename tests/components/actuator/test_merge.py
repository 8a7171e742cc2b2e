"""Pure merge functions for overlapping chunks: examples and properties (no clock, no bus)."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vla_edge.components.actuator.merge import (
    MERGE_FUNCTIONS,
    Track,
    average_weights,
    blend,
    contributors,
    crossfade_weight,
    merge,
    merge_average,
    merge_crossfade,
    merge_latest,
)
from vla_edge.components.actuator.safety import UnsafeAction

T0 = 1_700_000_000.0  # wall-clock seconds: the resolution the actuator really works at


def track(t_start: float, values: list[float], dt: float = 0.1, blend_from: float | None = None) -> Track:
    return Track(T0 + t_start, dt, tuple((v, -v) for v in values), None if blend_from is None else T0 + blend_from)


# --- tracks -------------------------------------------------------------------------------


def test_track_is_resampled_by_time_inside_its_span_only() -> None:
    tr = track(0.0, [0.0, 10.0, 20.0])
    assert tr.at(T0 + 0.1) == (10.0, -10.0)
    assert tr.at(T0 + 0.15) == pytest.approx((15.0, -15.0))
    assert tr.at(T0 + 0.2) == (20.0, -20.0)
    assert tr.at(T0 - 0.01) is None and tr.at(T0 + 0.21) is None
    assert tr.t_end == pytest.approx(T0 + 0.2)


def test_grid_times_at_wall_clock_resolution_return_the_exact_action() -> None:
    tr = track(0.0, [float(i) for i in range(30)], dt=1 / 30)
    for i in range(30):
        assert tr.at(tr.time(i)) == (float(i), -float(i))
        assert tr.at(T0 + i / 30) == (float(i), -float(i))


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_non_finite_actions_never_enter_a_track(bad: float) -> None:
    with pytest.raises(UnsafeAction, match="finite"):
        Track(T0, 0.1, ((0.0, 0.0), (bad, 0.0)))


@pytest.mark.parametrize(
    "kwargs", [{"dt": 0.0}, {"dt": math.nan}, {"actions": ()}, {"actions": ((),)}, {"t_start": math.inf}]
)
def test_malformed_tracks_are_refused(kwargs: dict) -> None:
    with pytest.raises((ValueError, UnsafeAction)):
        Track(**{"t_start": T0, "dt": 0.1, "actions": ((0.0,),), **kwargs})


def test_tracks_of_different_widths_do_not_merge() -> None:
    with pytest.raises(ValueError, match="widths"):
        merge_latest([track(0.0, [1.0]), Track(T0, 0.1, ((1.0,),))], T0)


# --- the three functions ------------------------------------------------------------------


def test_latest_takes_the_newest_covering_track() -> None:
    old, new = track(0.0, [1.0] * 5), track(0.2, [2.0] * 5)
    assert merge_latest([new, old], T0 + 0.1) == (1.0, -1.0)  # only the old one covers
    assert merge_latest([new, old], T0 + 0.3) == (2.0, -2.0)
    assert merge_latest([new, old], T0 + 0.6) == (2.0, -2.0)
    assert merge_latest([new, old], T0 + 1.0) is None


def test_average_weighs_newest_first_with_exp_decay() -> None:
    oldest, old, new = track(0.0, [10.0] * 9), track(0.1, [20.0] * 9), track(0.2, [40.0] * 9)
    w = [1.0, math.exp(-0.5), math.exp(-1.0)]
    expected = (40 * w[0] + 20 * w[1] + 10 * w[2]) / sum(w)
    assert merge_average([new, old, oldest], T0 + 0.4, decay=0.5)[0] == pytest.approx(expected)
    # rank counts covering tracks only: at 0.1 only old (rank 1 overall) and oldest cover
    assert merge_average([new, old, oldest], T0 + 0.1, 0.5)[0] == pytest.approx((20 + 10 * w[1]) / (1 + w[1]))
    assert merge_average([new, old, oldest], T0 + 0.0, 0.5) == (10.0, -10.0)  # a lone track is itself
    assert merge_average([new, old], T0 + 0.4, decay=0.0)[0] == pytest.approx(30.0)  # decay 0: plain mean


def test_average_weights_sum_to_one_and_fall_with_age() -> None:
    weights = average_weights(4, 0.5)
    assert math.fsum(weights) == pytest.approx(1.0)
    assert weights == sorted(weights, reverse=True)
    with pytest.raises(ValueError):
        average_weights(2, -1.0)


def test_crossfade_blends_linearly_from_arrival_then_follows_the_new_chunk() -> None:
    old = track(0.0, [0.0] * 21)  # 0.0 .. 2.0
    new = track(0.5, [10.0] * 21, blend_from=0.7)  # 0.5 .. 2.5, known from 0.7
    tracks = [new, old]
    assert merge_crossfade(tracks, T0 + 0.6, 0.4) == (0.0, 0.0)  # before arrival the old plan stands
    assert merge_crossfade(tracks, T0 + 0.7, 0.4)[0] == pytest.approx(0.0)
    assert merge_crossfade(tracks, T0 + 0.8, 0.4)[0] == pytest.approx(2.5, abs=1e-4)  # wall-clock resolution
    assert merge_crossfade(tracks, T0 + 0.9, 0.4)[0] == pytest.approx(5.0, abs=1e-4)
    assert merge_crossfade(tracks, T0 + 1.2, 0.4) == (10.0, -10.0)
    assert merge_crossfade(tracks, T0 + 2.3, 0.4) == (10.0, -10.0)  # the old plan has ended


def test_crossfade_window_shrinks_to_the_end_of_the_old_plan() -> None:
    old = track(0.0, [0.0] * 6)  # ends at 0.5
    new = track(0.3, [10.0] * 10)  # window min(1.0, 0.5 - 0.3) = 0.2
    assert merge_crossfade([new, old], T0 + 0.4, 1.0)[0] == pytest.approx(5.0, abs=1e-4)
    assert merge_crossfade([new, old], T0 + 0.5, 1.0)[0] == pytest.approx(10.0, abs=1e-4)


def test_crossfade_weight_edges() -> None:
    assert crossfade_weight(0.0, 1.0, 2.0, 0.5) == 0.0
    assert crossfade_weight(1.25, 1.0, 2.0, 0.5) == 0.5
    assert crossfade_weight(5.0, 1.0, 2.0, 0.5) == 1.0
    assert crossfade_weight(1.0, 1.0, 0.5, 0.5) == 1.0  # no overlap after the start: the new chunk at once
    with pytest.raises(ValueError):
        crossfade_weight(0.0, 0.0, 1.0, 0.0)


def test_blend_stays_between_its_ends_even_for_huge_values() -> None:
    big = 1.7e308
    assert blend((big,), (-big,), 0.5) == (0.0,)
    assert blend((big,), (big,), 0.3) == (big,)
    assert blend((1.0,), (2.0,), 0.0) == (1.0,) and blend((1.0,), (2.0,), 1.0) == (2.0,)
    with pytest.raises(ValueError):
        blend((1.0,), (2.0,), 1.5)


def test_merge_dispatches_by_name() -> None:
    old, new = track(0.0, [0.0] * 5), track(0.0, [10.0] * 5)
    t = T0 + 0.2
    assert merge("latest", [new, old], t) == (10.0, -10.0)
    assert merge("average", [new, old], t, decay=0.0) == (5.0, -5.0)
    assert merge("crossfade", [new, old], t, crossfade_s=0.4) == pytest.approx((5.0, -5.0))
    with pytest.raises(ValueError, match="unknown"):
        merge("median", [new], t)  # type: ignore[arg-type]


# --- properties ---------------------------------------------------------------------------

SPECIAL = [0.0, -0.0, 1.0, -1.0, 1e-300, 1e300, -1e300, 1.7e308, -1.7e308, 180.0, -180.0]
dts = st.sampled_from([1 / 30, 1 / 15, 0.02, 0.05, 0.1, 0.25])


def value(rng: random.Random) -> float:
    kind = rng.random()
    if kind < 0.15:
        return rng.choice(SPECIAL)
    if kind < 0.3:
        return rng.uniform(-1e300, 1e300)
    return rng.uniform(-180.0, 180.0)


SEEDS = st.integers(0, 2**32)
WIDTHS = st.integers(1, 4)
COUNTS = st.integers(1, 5)
LENGTHS = st.integers(1, 12)
STARTS = st.floats(0.0, 1.0)
BLEND_FROM = st.one_of(st.none(), st.floats(0.0, 1.5))
OFF_GRID = st.floats(-0.2, 4.5)


@st.composite
def tracks_and_time(draw: st.DrawFn) -> tuple[list[Track], float, int]:
    """1-5 tracks on mixed grids, newest first; values from a seeded generator (fast), times drawn."""
    rng = random.Random(draw(SEEDS))
    width = draw(WIDTHS)
    tracks = []
    for _ in range(draw(COUNTS)):
        n = draw(LENGTHS)
        start = T0 + draw(STARTS)
        blend_from = draw(BLEND_FROM)
        actions = tuple(tuple(value(rng) for _ in range(width)) for _ in range(n))
        tracks.append(Track(start, draw(dts), actions, None if blend_from is None else T0 + blend_from))
    newest = tracks[0]
    if draw(st.booleans()):  # often on the newest grid, as the schedule asks
        t = newest.time(draw(st.integers(0, len(newest.actions) - 1)))
    else:
        t = T0 + draw(OFF_GRID)
    return tracks, t, width


def bounds(tracks: list[Track], t: float, width: int) -> list[tuple[float, float]]:
    near = [
        a for tr in tracks for i, a in enumerate(tr.actions) if tr.covers(t) and abs(tr.time(i) - t) <= tr.dt * 1.01
    ]
    return [(min(a[j] for a in near), max(a[j] for a in near)) for j in range(width)]


@settings(max_examples=1500, deadline=None)
@given(tracks_and_time(), st.floats(0.0, 5.0), st.floats(0.01, 2.0), st.sampled_from(MERGE_FUNCTIONS))
def test_merged_values_are_finite_of_the_right_width_and_within_the_contributors(
    case: tuple[list[Track], float, int], decay: float, crossfade_s: float, function: str
) -> None:
    tracks, t, width = case
    result = merge(function, tracks, t, decay=decay, crossfade_s=crossfade_s)  # type: ignore[arg-type]
    if contributors(tracks, t) == 0:
        assert result is None
        return
    assert result is not None and len(result) == width
    assert all(math.isfinite(v) for v in result)
    for value, (low, high) in zip(result, bounds(tracks, t, width), strict=True):
        assert low <= value <= high


@settings(max_examples=1000, deadline=None)
@given(tracks_and_time())
def test_latest_equals_the_newest_chunk_where_it_covers(case: tuple[list[Track], float, int]) -> None:
    tracks, t, _ = case
    newest = tracks[0]
    if newest.covers(t):
        assert merge_latest(tracks, t) == newest.at(t)
    for index, action in enumerate(newest.actions):
        assert merge_latest(tracks, newest.time(index)) == action


@settings(max_examples=1000, deadline=None)
@given(tracks_and_time(), st.floats(0.01, 2.0))
def test_crossfade_follows_the_newest_chunk_after_its_window(
    case: tuple[list[Track], float, int], crossfade_s: float
) -> None:
    tracks, t, _ = case
    newest = tracks[0]
    if newest.covers(t) and t >= newest.blend_start + crossfade_s:
        assert merge_crossfade(tracks, t, crossfade_s) == newest.at(t)
    if len(tracks) == 1 or not any(tr.covers(t) for tr in tracks[1:]):
        assert merge_crossfade(tracks, t, crossfade_s) == merge_latest(tracks, t)
