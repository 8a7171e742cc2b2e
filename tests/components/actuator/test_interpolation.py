"""``interpolate``: ticks between two planned actions follow the straight line between them."""

from __future__ import annotations

import math
import time

import pytest
from support.actuator import MODEL, NAMES, actuator_config
from support.servos import FakeServoBus

from vla_edge import messages
from vla_edge.bus.memory import InMemoryBroker
from vla_edge.components.actuator.component import ActuatorComponent
from vla_edge.components.actuator.schedule import MAX_INTERPOLATION_GAP_S, ScheduledAction, between
from vla_edge.components.actuator.units import degrees_to_ticks

DT = 1 / 30


def action(t: float, values: tuple[float, ...]) -> ScheduledAction:
    return ScheduledAction(t, values, chunk=None, index=0)  # type: ignore[arg-type]


def test_between_is_the_straight_line_and_nothing_outside_or_across_a_hole() -> None:
    a, b = action(10.0, (0.0, 30.0)), action(10.0 + DT, (3.0, 0.0))
    third = between(a, b, 10.0 + DT / 3)
    assert third is not None and third.values == pytest.approx((1.0, 20.0))
    assert between(a, b, 10.0) is None and between(a, b, 10.0 + DT) is None  # the actions themselves
    assert between(a, None, 10.01) is None
    far = action(10.0 + MAX_INTERPOLATION_GAP_S + 0.01, (3.0, 0.0))
    assert between(a, far, 10.1) is None  # a hole in the plan is not bridged


def run_ticks(interpolate: bool) -> list[dict[int, int]]:
    servos = FakeServoBus(speed_ticks=4096)
    config = actuator_config("fake://servos", controlHz=90.0, maxStepDeg=90.0, interpolate=interpolate)
    component = ActuatorComponent(InMemoryBroker().bus(), config, servos=servos)
    component.subscribe()
    t0 = math.ceil((time.time() + 0.5) / DT) * DT
    chunk = messages.ActionChunk(
        model=MODEL, t_created=time.time(), t_observation=time.time(), t_start=t0, dt=DT, names=NAMES,
        actions=[[0.0] * 6, [3.0, 0, 0, 0, 0, 0], [6.0, 0, 0, 0, 0, 0]],
    )
    component._tick()  # connect: holds where the arm is
    component.intake.submit(chunk)
    servos.goal_writes.clear()
    for k in range(7):  # three ticks per action
        component._tick(t0 + k * DT / 3)
    component.close()
    return servos.goal_writes


def test_ticks_between_actions_move_along_the_line_when_enabled() -> None:
    shoulder = [goals[1] for goals in run_ticks(interpolate=True)]
    assert shoulder == [degrees_to_ticks(v) for v in (0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0)]


def test_without_interpolation_the_goal_steps_at_the_actions() -> None:
    shoulder = [goals[1] for goals in run_ticks(interpolate=False)]
    assert shoulder == [degrees_to_ticks(v) for v in (0.0, 3.0, 6.0)]
