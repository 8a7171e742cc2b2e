"""Pure safety rules and unit conversion: no bus, no clock."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vla_edge.components.actuator.safety import UnsafeAction, check_vector, clamp_goal
from vla_edge.components.actuator.units import degrees_to_ticks, ticks_to_degrees

LOWER = [-90.0, -45.0, 0.0]
UPPER = [90.0, 45.0, 100.0]


def test_within_limits_and_step_passes_unchanged() -> None:
    result = clamp_goal([1.0, -2.0, 50.0], [0.0, 0.0, 49.0], LOWER, UPPER, max_step=5.0)
    assert result.goals == (1.0, -2.0, 50.0)
    assert not result.any_limited and not result.any_stepped


def test_limits_clamp_each_joint() -> None:
    result = clamp_goal([200.0, -60.0, -1.0], [89.0, -44.0, 1.0], LOWER, UPPER, max_step=50.0)
    assert result.goals == (90.0, -45.0, 0.0)
    assert result.limited == (True, True, True)


def test_step_is_bounded_from_the_reference() -> None:
    result = clamp_goal([30.0, -30.0, 10.0], [0.0, 0.0, 9.0], LOWER, UPPER, max_step=5.0)
    assert result.goals == (5.0, -5.0, 10.0)
    assert result.stepped == (True, True, False)
    assert not result.any_limited


def test_limits_win_over_step_when_the_reference_is_outside() -> None:
    result = clamp_goal([0.0, 0.0, 50.0], [120.0, 0.0, 50.0], LOWER, UPPER, max_step=5.0)
    assert result.goals[0] == 90.0


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_action_is_refused(bad: float) -> None:
    with pytest.raises(UnsafeAction, match="finite"):
        clamp_goal([0.0, bad, 0.0], [0.0, 0.0, 0.0], LOWER, UPPER, max_step=5.0)


def test_non_finite_reference_is_refused() -> None:
    with pytest.raises(UnsafeAction, match="reference"):
        clamp_goal([0.0, 0.0, 0.0], [0.0, math.nan, 0.0], LOWER, UPPER, max_step=5.0)


@pytest.mark.parametrize("action", [[0.0, 0.0], [0.0, 0.0, 0.0, 0.0], []])
def test_wrong_length_is_refused(action: list[float]) -> None:
    with pytest.raises(UnsafeAction, match="3 joints"):
        clamp_goal(action, [0.0, 0.0, 0.0], LOWER, UPPER, max_step=5.0)


def test_non_numbers_are_refused() -> None:
    with pytest.raises(UnsafeAction, match="not a number"):
        check_vector([0.0, True, 0.0], 3)
    with pytest.raises(UnsafeAction, match="not a number"):
        check_vector([0.0, "1", 0.0], 3)  # type: ignore[list-item]


@pytest.mark.parametrize("max_step", [0.0, -1.0, math.nan])
def test_bad_max_step_is_a_programming_error(max_step: float) -> None:
    with pytest.raises(ValueError):
        clamp_goal([0.0] * 3, [0.0] * 3, LOWER, UPPER, max_step=max_step)


finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)


@given(st.lists(finite, min_size=3, max_size=3), st.lists(finite, min_size=3, max_size=3))
def test_goal_is_always_within_limits(action: list[float], reference: list[float]) -> None:
    result = clamp_goal(action, reference, LOWER, UPPER, max_step=5.0)
    assert all(lo <= g <= hi for g, lo, hi in zip(result.goals, LOWER, UPPER))


@given(
    st.lists(finite, min_size=3, max_size=3),
    st.tuples(st.floats(-90, 90), st.floats(-45, 45), st.floats(0, 100)),
    st.floats(min_value=0.01, max_value=20.0),
)
def test_step_bound_holds_when_the_reference_is_inside(action, reference, max_step) -> None:
    result = clamp_goal(action, reference, LOWER, UPPER, max_step=max_step)
    assert all(abs(g - r) <= max_step + 1e-9 for g, r in zip(result.goals, reference))


def test_unit_conversion() -> None:
    assert ticks_to_degrees(2048) == 0.0
    assert ticks_to_degrees(3072) == 90.0
    assert ticks_to_degrees(1024) == -90.0
    assert degrees_to_ticks(0.0) == 2048
    assert degrees_to_ticks(-90.0) == 1024
    assert degrees_to_ticks(180.0) == 4095  # clamped to the encoder range
    assert degrees_to_ticks(-500.0) == 0


@given(st.integers(min_value=0, max_value=4095))
def test_ticks_round_trip(ticks: int) -> None:
    assert degrees_to_ticks(ticks_to_degrees(ticks)) == ticks
