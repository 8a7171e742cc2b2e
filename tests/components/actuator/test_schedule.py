"""The time-indexed action queue."""

from __future__ import annotations

import pytest

from vla_edge import messages
from vla_edge.components.actuator.safety import UnsafeAction
from vla_edge.components.actuator.schedule import ActionSchedule

NAMES = ["a", "b"]
MODEL = messages.ModelRef(name="m", version="1", sha256="0" * 64)


def chunk(t_start: float, values: list[float], dt: float = 0.1, names: list[str] = NAMES) -> messages.ActionChunk:
    return messages.ActionChunk(
        model=MODEL,
        t_created=t_start,
        t_observation=t_start - 0.05,
        t_start=t_start,
        dt=dt,
        names=names,
        actions=[[v, -v] for v in values],
    )


def test_action_i_is_due_at_t_start_plus_i_dt() -> None:
    schedule = ActionSchedule(NAMES)
    schedule.add(chunk(100.0, [1.0, 2.0, 3.0]))
    assert schedule.pop_due(99.99, 0.05).action is None
    due = schedule.pop_due(100.1, 0.05)
    assert due.action is not None and due.action.values == (2.0, -2.0) and due.action.index == 1
    assert due.stale == 1  # action 0 (t=100.0) is more than one tick old
    assert schedule.pop_due(100.2, 0.05).action.values == (3.0, -3.0)
    assert len(schedule) == 0


def test_newest_due_action_wins_within_a_tick() -> None:
    schedule = ActionSchedule(NAMES)
    schedule.add(chunk(100.0, [1.0, 2.0, 3.0], dt=0.01))
    due = schedule.pop_due(100.025, 0.05)
    assert due.action.values == (3.0, -3.0)
    assert (due.stale, due.skipped) == (0, 2)


def test_latest_chunk_replaces_the_times_it_covers() -> None:
    schedule = ActionSchedule(NAMES)
    schedule.add(chunk(100.0, [1.0, 1.0, 1.0, 1.0, 1.0]))  # 100.0 .. 100.4
    replaced = schedule.add(chunk(100.15, [2.0, 2.0]))  # 100.15, 100.25: covers 100.2
    assert replaced == 1
    times = []
    for now in (100.0, 100.1, 100.15, 100.25, 100.3, 100.4):
        action = schedule.pop_due(now, 0.001).action
        times.append((now, action.values[0] if action else None))
    assert times == [(100.0, 1.0), (100.1, 1.0), (100.15, 2.0), (100.25, 2.0), (100.3, 1.0), (100.4, 1.0)]


def test_joint_order_follows_the_configuration() -> None:
    schedule = ActionSchedule(NAMES)
    schedule.add(chunk(100.0, [5.0], names=["b", "a"]))
    assert schedule.pop_due(100.0, 0.05).action.values == (-5.0, 5.0)


@pytest.mark.parametrize("names", [["a"], ["a", "c"], ["a", "a"]])
def test_chunk_for_other_joints_is_refused(names: list[str]) -> None:
    schedule = ActionSchedule(NAMES)
    bad = messages.ActionChunk(
        model=MODEL, t_created=1, t_observation=1, t_start=1, dt=0.1, names=names, actions=[[0.0] * len(names)]
    )
    with pytest.raises(UnsafeAction, match="joints"):
        schedule.add(bad)
    assert len(schedule) == 0


def test_clear() -> None:
    schedule = ActionSchedule(NAMES)
    schedule.add(chunk(100.0, [1.0, 2.0]))
    assert schedule.clear() == 2
    assert schedule.pop_due(101.0, 5.0).action is None
