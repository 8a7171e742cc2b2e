"""The time-indexed action queue."""

from __future__ import annotations

import math

import pytest

from vla_edge import messages
from vla_edge.components.actuator.config import ActuatorConfig
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


# --- merging overlapping chunks ---------------------------------------------------------


def drain(schedule: ActionSchedule, times: list[float]) -> list[float | None]:
    """First joint of the action due at each time (a tiny lag: the slot at that time, give or take float error)."""
    out = []
    for now in times:
        action = schedule.pop_due(now + 1e-9, 0.001).action
        out.append(None if action is None else round(action.values[0], 9))
    return out


def test_latest_is_the_default_and_keeps_todays_behaviour() -> None:
    schedule = ActionSchedule(NAMES)
    assert schedule.merge == "latest"
    first = schedule.submit(chunk(100.0, [1.0] * 5), now=100.0)
    second = schedule.submit(chunk(100.2, [2.0] * 5), now=100.05)  # 100.2 .. 100.6
    assert (first.outcome, first.merged, first.queued) == ("queued", 0, 5)
    assert (second.replaced, second.merged) == (3, 3)
    assert drain(schedule, [100.0, 100.1, 100.2, 100.4, 100.6]) == [1.0, 1.0, 2.0, 2.0, 2.0]


def test_average_merges_the_slots_both_chunks_cover() -> None:
    schedule = ActionSchedule(NAMES, "average", merge_decay=1.0)
    schedule.add(chunk(100.0, [10.0] * 5))  # 100.0 .. 100.4
    admission = schedule.submit(chunk(100.2, [20.0] * 5))  # 100.2 .. 100.6
    assert (admission.replaced, admission.merged) == (3, 3)
    w = math.exp(-1.0)
    mixed = round((20.0 + 10.0 * w) / (1 + w), 9)
    times = [100.0, 100.1, 100.2, 100.3, 100.4, 100.5, 100.6]
    assert drain(schedule, times) == [10.0, 10.0, mixed, mixed, mixed, 20.0, 20.0]


def test_average_of_three_chunks_ranks_them_newest_first() -> None:
    schedule = ActionSchedule(NAMES, "average", merge_decay=0.5)
    for t_start, value in ((100.0, 10.0), (100.1, 20.0), (100.2, 40.0)):
        schedule.add(chunk(t_start, [value] * 5))
    w = [1.0, math.exp(-0.5), math.exp(-1.0)]
    due = schedule.pop_due(100.3, 0.001).action
    assert due is not None and due.values[0] == pytest.approx((40 * w[0] + 20 * w[1] + 10 * w[2]) / sum(w))
    assert due.values[1] == pytest.approx(-due.values[0])


def test_average_remembers_at_most_merge_max_chunks() -> None:
    schedule = ActionSchedule(NAMES, "average", merge_decay=0.0, merge_max_chunks=2)
    for value in (100.0, 10.0, 20.0):
        schedule.add(chunk(100.0, [value] * 3))
    assert schedule.pop_due(100.0, 0.001).action.values[0] == pytest.approx(15.0)  # the first chunk is forgotten


def test_average_on_different_grids_resamples_the_older_chunk_by_time() -> None:
    schedule = ActionSchedule(NAMES, "average", merge_decay=0.0)
    schedule.add(chunk(100.0, [0.0, 10.0, 20.0, 30.0], dt=0.1))  # a ramp on a 0.1 s grid
    schedule.add(chunk(100.05, [0.0] * 5, dt=0.05))  # 100.05 .. 100.25 on a 0.05 s grid
    got = drain(schedule, [100.05, 100.1, 100.15, 100.2, 100.25])
    assert got == pytest.approx([2.5, 5.0, 7.5, 10.0, 12.5])  # mean of the ramp (5, 10, 15, 20, 25) and 0


def test_crossfade_blends_from_arrival_over_crossfade_s() -> None:
    schedule = ActionSchedule(NAMES, "crossfade", crossfade_s=0.4)
    schedule.submit(chunk(100.0, [0.0] * 21), now=100.0)  # 100.0 .. 102.0
    schedule.submit(chunk(100.2, [8.0] * 21), now=100.2)  # arrives at 100.2
    got = drain(schedule, [100.2, 100.3, 100.4, 100.5, 100.6, 100.7, 102.0, 102.2])
    assert got == pytest.approx([0.0, 2.0, 4.0, 6.0, 8.0, 8.0, 8.0, 8.0], abs=1e-6)


def test_a_merged_chunk_is_the_one_reported_for_its_slots() -> None:
    schedule = ActionSchedule(NAMES, "average")
    schedule.add(chunk(100.0, [1.0] * 3))
    newer = chunk(100.0, [2.0] * 3)
    schedule.add(newer)
    due = schedule.pop_due(100.1, 0.001).action
    assert due is not None and (due.chunk.chunk_id, due.index) == (newer.chunk_id, 1)


def test_clear_forgets_remembered_chunks_too() -> None:
    schedule = ActionSchedule(NAMES, "average", merge_decay=0.0)
    schedule.add(chunk(100.0, [10.0] * 3))
    schedule.clear()  # e.g. an e-stop: nothing from before may leak into later merges
    admission = schedule.submit(chunk(100.0, [20.0] * 3))
    assert admission.merged == 0
    assert schedule.pop_due(100.0, 0.001).action.values[0] == 20.0


# --- time: stale actions and chunks, far-future chunks -------------------------------------


def test_actions_older_than_the_lag_are_dropped_and_counted() -> None:
    schedule = ActionSchedule(NAMES, max_lag_s=0.15)
    schedule.add(chunk(100.0, [1.0, 2.0, 3.0, 4.0, 5.0]))
    due = schedule.pop_due(100.35)  # lag from the schedule: 100.2 and 100.3 are fresh enough
    assert (due.action.values[0], due.stale, due.skipped) == (4.0, 2, 1)
    assert due.ahead_s == pytest.approx(0.05)
    assert schedule.ahead_s(100.35) == pytest.approx(0.05)


def test_a_chunk_entirely_in_the_past_is_dropped_whole() -> None:
    schedule = ActionSchedule(NAMES, max_lag_s=0.05)
    schedule.add(chunk(100.0, [1.0] * 3))
    admission = schedule.submit(chunk(99.0, [9.0] * 5), now=100.0)  # last action at 99.4
    assert admission.outcome == "stale" and "before it arrived" in admission.detail
    assert schedule.add(chunk(99.0, [9.0] * 5), now=100.0) == 0
    assert len(schedule) == 3
    partly = schedule.submit(chunk(99.8, [7.0] * 5), now=100.0)  # 99.8 .. 100.2: its tail is still to come
    assert partly.outcome == "queued"


def test_a_chunk_far_in_the_future_is_rejected() -> None:
    schedule = ActionSchedule(NAMES, max_lead_s=5.0)
    admission = schedule.submit(chunk(106.0, [1.0] * 3), now=100.0)
    assert admission.outcome == "far_future" and "clocks" in admission.detail
    assert len(schedule) == 0
    assert schedule.submit(chunk(104.9, [1.0] * 3), now=100.0).outcome == "queued"


def test_without_now_no_time_checks_are_made() -> None:
    schedule = ActionSchedule(NAMES)
    assert schedule.submit(chunk(1.0, [1.0])).outcome == "queued"
    assert schedule.submit(chunk(1e9, [1.0])).outcome == "queued"


def test_slots_merged_count_only_the_ones_still_executable() -> None:
    schedule = ActionSchedule(NAMES, "average", max_lag_s=0.05)
    schedule.submit(chunk(100.0, [1.0] * 10), now=100.0)  # 100.0 .. 100.9
    admission = schedule.submit(chunk(100.0, [2.0] * 10), now=100.5)  # 100.0 .. 100.4 are gone already
    assert admission.merged == 5


@pytest.mark.parametrize(
    "kwargs",
    [{"merge": "median"}, {"merge_max_chunks": 0}, {"crossfade_s": 0.0}, {"max_lag_s": -1.0}, {"merge_decay": -0.1}],
)
def test_bad_settings_are_programming_errors(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        ActionSchedule(NAMES, **kwargs)


def test_from_config_takes_the_configured_settings() -> None:
    config = ActuatorConfig(chunk_merge="crossfade", crossfade_s=0.3, max_action_lag_s=0.1, max_lead_s=2.0)
    schedule = ActionSchedule.from_config(config)
    assert (schedule.merge, schedule.crossfade_s) == ("crossfade", 0.3)
    assert (schedule.max_lag_s, schedule.max_lead_s) == (0.1, 2.0)
    assert schedule.names == config.names
