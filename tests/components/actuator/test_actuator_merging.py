"""Chunk merging, stale and far-future chunks, and plan health, against the emulated arm."""

from __future__ import annotations

import math

from support import wait_for
from support.actuator import Harness, chunk

from vla_edge.components.actuator.units import degrees_to_ticks
from vla_edge.motors.feetech.emulator.remote import RemoteArmEmulator

LONG = 900  # actions at 30 Hz: 30 s, so no chunk runs out while a slow machine catches up


def goal_degrees_reached(emulator: RemoteArmEmulator, expected: dict[int, float]) -> bool:
    goals = emulator.goal_positions()
    return all(goals[servo] == degrees_to_ticks(value) for servo, value in expected.items())


def test_average_merges_overlapping_chunks_into_the_goals(make_actuator, emulator: RemoteArmEmulator) -> None:
    harness: Harness = make_actuator(chunkMerge="average", mergeDecay=0.5)
    harness.wait_ticks(2)
    w1, w2 = math.exp(-0.5), math.exp(-1.0)

    harness.publish(chunk([[10.0, 0, 0, 0, 0, 120.0]] * LONG))  # the gripper asks beyond its 100° limit
    wait_for(lambda: goal_degrees_reached(emulator, {1: 10.0, 6: 100.0}))

    harness.publish(chunk([[20.0, -8.0, 0, 0, 0, 90.0]] * LONG))
    pan, lift, grip = (20 + 10 * w1) / (1 + w1), -8 / (1 + w1), (90 + 120 * w1) / (1 + w1)
    assert grip > 100.0  # the average is still beyond the limit: clamped after merging
    wait_for(lambda: goal_degrees_reached(emulator, {1: pan, 2: lift, 6: 100.0}))

    harness.publish(chunk([[30.0, 4.0, 0, 0, 0, 30.0]] * LONG))
    total = 1 + w1 + w2
    expected = {1: (30 + 20 * w1 + 10 * w2) / total, 2: (4 - 8 * w1) / total, 6: (30 + 90 * w1 + 120 * w2) / total}
    wait_for(lambda: goal_degrees_reached(emulator, expected))

    counters = harness.component.counters
    assert counters.get("chunks_merged.average") == 2
    assert counters.get("safety.clamped_limit") >= 1
    assert counters.get("chunks_merged.latest") == 0


def test_plan_health_reports_queue_ahead_and_starved_ticks(make_actuator) -> None:
    harness: Harness = make_actuator(holdAfterS=0.5)
    harness.wait_ticks(5)
    counters = harness.component.counters
    assert counters.get("starved_ticks") == 0  # idle from the start is not starving

    harness.publish(chunk([[3.0, 0, 0, 0, 0, 0]] * 10))  # a third of a second of plan, then nothing
    wait_for(lambda: counters.get("actions_applied") >= 1)
    wait_for(lambda: counters.get("starved_ticks") >= 1)
    seen = len(harness.health)
    wait_for(lambda: any(h.counters.get("starved_ticks", 0) >= 1 for h in list(harness.health)[seen:]))
    dry = next(h for h in list(harness.health)[seen:] if h.counters.get("starved_ticks", 0) >= 1)
    assert dry.metrics["queue_ahead_s"] == 0.0  # nothing planned any more

    harness.publish(chunk([[6.0, 0, 0, 0, 0, 0]] * LONG))
    wait_for(lambda: any((h.metrics.get("queue_ahead_s") or 0.0) > 5.0 for h in list(harness.health)))
    health = harness.health[-1]
    assert {"queue_ahead_s", "queue_ahead_s_min"} <= set(health.metrics)
    assert "starved_ticks" in health.counters


def test_stale_and_far_future_chunks_are_dropped_and_counted(make_actuator, emulator: RemoteArmEmulator) -> None:
    harness: Harness = make_actuator(maxLeadS=5.0)
    harness.wait_ticks(2)
    writes = len(emulator.goal_writes())
    harness.publish(chunk([[40.0, 0, 0, 0, 0, 0]] * 30, lead_s=-5.0))  # ended 4 s before it arrives
    harness.publish(chunk([[40.0, 0, 0, 0, 0, 0]] * 30, lead_s=60.0))  # a clock a minute ahead
    counters = harness.component.counters
    assert counters.get("chunks_dropped.stale") == 1
    assert counters.get("chunks_dropped.far_future") == 1
    harness.wait_ticks(10)
    assert len(emulator.goal_writes()) == writes and counters.get("actions_applied") == 0

    harness.publish(chunk([[7.0, 0, 0, 0, 0, 0]] * 60, lead_s=-0.5))  # its first 15 actions are already late
    wait_for(lambda: emulator.goal_positions()[1] == degrees_to_ticks(7.0))
    assert counters.get("actions_dropped.stale") >= 10
