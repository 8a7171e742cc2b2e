"""Control ticks on the action grid: every tick finds exactly one action, even when it wakes late."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from vla_edge import messages
from vla_edge.components.actuator.component import next_tick_time
from vla_edge.components.actuator.schedule import ActionSchedule

NAMES = ["a", "b"]
DT = 1 / 30
PHASE = 0.004
MODEL = messages.ModelRef(name="m", version="1", sha256="d" * 64)


def test_next_tick_time_is_the_next_grid_point_plus_phase() -> None:
    assert next_tick_time(10.0, 0.5, 0.1) == 10.1
    assert next_tick_time(10.1, 0.5, 0.1) == 10.6
    assert next_tick_time(10.05, 0.5, 0.0) == 10.5
    t = 1_763_785_000.123
    nxt = next_tick_time(t, DT, PHASE)
    assert t < nxt <= t + DT
    assert abs((nxt - PHASE) / DT - round((nxt - PHASE) / DT)) < 1e-3


@settings(max_examples=300, deadline=None)
@given(
    start=st.floats(min_value=1.7e9, max_value=1.8e9),
    lateness=st.lists(st.floats(min_value=0.0, max_value=DT - PHASE - 0.002), min_size=60, max_size=60),
)
def test_ticks_on_the_grid_take_each_action_once_despite_late_wakeups(start: float, lateness: list[float]) -> None:
    t_start = math.ceil(start / DT) * DT  # as the inference component sets it
    actions = [[float(i), -float(i)] for i in range(60)]
    schedule = ActionSchedule(NAMES)
    schedule.add(messages.ActionChunk(model=MODEL, t_created=start, t_observation=start, t_start=t_start, dt=DT,
                                      names=NAMES, actions=actions))
    taken = []
    now = t_start - DT / 2
    for late in lateness:
        now = next_tick_time(now, DT, PHASE) + late
        due = schedule.pop_due(now, DT)
        assert due.action is not None, f"empty tick at {now - t_start:.4f} s"
        taken.append(due.action.values[0])
    assert taken == [float(i) for i in range(60)]


@settings(max_examples=200, deadline=None)
@given(lateness=st.lists(st.floats(min_value=0.0, max_value=DT * 0.99), min_size=30, max_size=30))
def test_a_tick_asking_for_its_planned_slot_executes_its_own_action_however_late_it_woke(lateness: list[float]) -> None:
    start = 1_763_785_000.0
    t_start = math.ceil(start / DT) * DT
    schedule = ActionSchedule(NAMES)
    schedule.add(messages.ActionChunk(model=MODEL, t_created=start, t_observation=start, t_start=t_start, dt=DT,
                                      names=NAMES, actions=[[float(i), 0.0] for i in range(30)]))
    planned = t_start + PHASE
    taken = []
    for late in lateness:  # woke `late` after the planned time, as the actuator's loop may
        due = schedule.pop_due(min(planned, planned + late), 0.05)
        assert due.action is not None
        taken.append(due.action.values[0])
        planned += DT
    assert taken == [float(i) for i in range(30)]
