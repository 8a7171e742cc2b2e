"""Joint-state and instruction history: the value current at a given time."""

from __future__ import annotations

from vla_edge import messages
from vla_edge.components.inference.inputs import InputHistory

NAMES = ["a", "b"]


def state(t: float, value: float) -> messages.JointState:
    return messages.JointState(t=t, names=["b", "a"], positions=[value + 1, value])


def test_joint_state_closest_to_a_time_in_configured_order() -> None:
    history = InputHistory(NAMES, "")
    assert history.joint_state_at(5.0) is None and history.latest_joint_state() is None
    for t in (1.0, 1.1, 1.2, 1.3):
        history.add_joint_state(state(t, t * 10))
    closest = history.joint_state_at(1.14)
    assert closest is not None and closest.t == 1.1
    assert history.positions(closest) == [11.0, 12.0]
    assert history.joint_state_at(0.0).t == 1.0 and history.joint_state_at(9.0).t == 1.3  # type: ignore[union-attr]


def test_a_clock_that_goes_back_restarts_the_history() -> None:
    history = InputHistory(NAMES, "")
    history.add_joint_state(state(100.0, 1.0))
    history.add_joint_state(state(50.0, 2.0))
    latest = history.latest_joint_state()
    assert latest is not None and latest.t == 50.0
    assert history.joint_state_at(100.0).t == 50.0  # type: ignore[union-attr]


def test_task_current_at_a_time() -> None:
    history = InputHistory(NAMES, "wave")
    assert history.set_task("pick", 10.0) == "wave"
    history.set_task("place", 20.0)
    assert [history.task_at(t) for t in (0.0, 10.0, 15.0, 25.0)] == ["wave", "pick", "pick", "place"]
    assert history.task == "place"
