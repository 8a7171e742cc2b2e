"""Pure safety checks applied to every goal before it reaches the servos.

No I/O, no clocks, no state: each function maps numbers to numbers (or raises
:class:`UnsafeAction`), so the rules can be tested exhaustively on their own.

Order of the rules, per joint:

1. the action must have one finite value per joint, else the whole action is refused;
2. the goal may move at most ``max_step`` from the reference (the last goal written,
   or the measured position when there is none);
3. the goal never leaves ``[lower, upper]``. Limits win over the step rule: when the
   reference itself is outside the limits, the goal is put on the nearest limit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from vla_edge.errors import InvalidMessage


class UnsafeAction(InvalidMessage):
    """An action that cannot be made safe by clamping (wrong length, NaN, infinity)."""

    reason = "unsafe_action"


@dataclass(frozen=True)
class Clamped:
    goals: tuple[float, ...]
    """The goals to write, one per joint."""
    limited: tuple[bool, ...]
    """Per joint: the requested value was outside the joint limits."""
    stepped: tuple[bool, ...]
    """Per joint: the requested value was further than ``max_step`` from the reference."""

    @property
    def any_limited(self) -> bool:
        return any(self.limited)

    @property
    def any_stepped(self) -> bool:
        return any(self.stepped)


def check_vector(values: Sequence[float], width: int, what: str = "action") -> tuple[float, ...]:
    """Return ``values`` as a tuple of floats, or raise :class:`UnsafeAction`."""
    if len(values) != width:
        raise UnsafeAction(f"{what} has {len(values)} values for {width} joints")
    result = []
    for index, value in enumerate(values):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UnsafeAction(f"{what}[{index}] is {type(value).__name__}, not a number")
        if not math.isfinite(value):
            raise UnsafeAction(f"{what}[{index}] is {value!r}, not a finite number")
        result.append(float(value))
    return tuple(result)


def clamp_goal(
    action: Sequence[float],
    reference: Sequence[float],
    lower: Sequence[float],
    upper: Sequence[float],
    max_step: float,
) -> Clamped:
    """Clamp ``action`` to ``max_step`` around ``reference`` and then to ``[lower, upper]``."""
    width = len(lower)
    if len(upper) != width:
        raise ValueError(f"{width} lower limits but {len(upper)} upper limits")
    if not (math.isfinite(max_step) and max_step > 0):
        raise ValueError(f"max_step must be a positive finite number, got {max_step!r}")
    wanted = check_vector(action, width)
    ref = check_vector(reference, width, "reference")
    goals, limited, stepped = [], [], []
    for value, previous, low, high in zip(wanted, ref, lower, upper, strict=True):
        if not low < high:
            raise ValueError(f"joint limits must satisfy lower < upper, got [{low}, {high}]")
        step_bounded = min(max(value, previous - max_step), previous + max_step)
        goal = min(max(step_bounded, low), high)
        goals.append(goal)
        limited.append(not low <= value <= high)
        stepped.append(step_bounded != value)
    return Clamped(tuple(goals), tuple(limited), tuple(stepped))
