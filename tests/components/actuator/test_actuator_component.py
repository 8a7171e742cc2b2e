"""The actuator component against the emulated arm: real SDK, real pty, in-memory message bus."""

from __future__ import annotations

import itertools
import json
import math
import threading

from support import wait_for
from support.actuator import Harness, actuator_config, chunk, finish, start

from vla_edge import messages
from vla_edge.components.actuator.units import degrees_to_ticks
from vla_edge.motors.feetech.emulator.remote import RemoteArmEmulator

LIMITS = {1: (-110, 110), 2: (-100, 100), 3: (-100, 100), 4: (-100, 100), 5: (-160, 160), 6: (-10, 100)}
STEP_TICKS = degrees_to_ticks(5.0) - 2048  # maxStepDeg default, in ticks (57)


def test_goals_follow_the_chunk_within_limits_and_max_step(make_actuator, emulator: RemoteArmEmulator) -> None:
    harness: Harness = make_actuator()
    harness.wait_ticks(2)
    target = [30.0, -20.0, 0.0, 0.0, 0.0, 150.0]  # the gripper asks beyond its 100° limit
    sent = chunk([target] * 90)
    harness.publish(sent)

    expected = {1: degrees_to_ticks(30.0), 2: degrees_to_ticks(-20.0), 6: degrees_to_ticks(100.0)}
    wait_for(lambda: all(emulator.goal_positions()[i] == v for i, v in expected.items()))
    wait_for(lambda: all(abs(emulator.present_positions()[i] - v) <= 1 for i, v in expected.items()))

    per_servo: dict[int, list[int]] = {}
    for _, servo, goal in emulator.goal_writes():
        per_servo.setdefault(servo, []).append(goal)
    for servo, goals in per_servo.items():
        low, high = (degrees_to_ticks(d) for d in LIMITS[servo])
        assert all(low <= g <= high for g in goals), (servo, goals)
        steps = [abs(b - a) for a, b in itertools.pairwise(goals)]
        assert max(steps, default=0) <= STEP_TICKS, (servo, goals)
    assert len(per_servo[6]) >= 100 / 5  # the gripper needed at least 20 steps of 5°

    counters = harness.component.counters
    assert counters.get("safety.clamped_limit") >= 1
    assert counters.get("safety.clamped_step") >= 1
    applied = [s for s in harness.joint_states() if s.chunk_id == sent.chunk_id]
    assert applied and all(s.action_index is not None for s in applied)
    with_latency = [s for s in harness.joint_states() if s.latency_ms is not None]
    assert len(with_latency) == 1  # only the tick that wrote the chunk's first action
    assert with_latency[0].latency_ms > 0 and with_latency[0].chunk_id == sent.chunk_id
    wait_for(lambda: harness.last_state().actions_applied >= 20)  # the state of the last write may lag by a tick
    last = harness.last_state()
    assert last.names == sent.names and last.torque_enabled


def test_watchdog_holds_then_turns_torque_off(make_actuator, emulator: RemoteArmEmulator) -> None:
    harness = make_actuator(holdAfterS=0.3, torqueOffAfterS=1.5)
    harness.wait_ticks(2)
    harness.publish(chunk([[10.0, 0, 0, 0, 0, 0]] * 3))
    wait_for(lambda: emulator.goal_positions()[1] > 2048)
    wait_for(lambda: (s := harness.last_state()) is not None and s.holding and s.torque_enabled)
    wait_for(lambda: not any(emulator.torque_enabled().values()))
    wait_for(lambda: not harness.last_state().torque_enabled)
    counters = harness.component.counters
    assert counters.get("safety.watchdog_hold") >= 1
    assert counters.get("safety.watchdog_torque_off") == 1

    writes = len(emulator.goal_writes())
    harness.publish(chunk([[-10.0, 0, 0, 0, 0, 0]] * 60))  # a fresh action brings torque back
    wait_for(lambda: all(emulator.torque_enabled().values()))
    wait_for(lambda: emulator.goal_positions()[1] == degrees_to_ticks(-10.0))
    assert len(emulator.goal_writes()) > writes


def test_estop_turns_torque_off_latches_and_resets(make_actuator, emulator: RemoteArmEmulator) -> None:
    harness = make_actuator(torqueOffAfterS=60.0)
    harness.wait_ticks(2)
    harness.publish(chunk([[20.0, 0, 0, 0, 0, 0]] * 300))
    wait_for(lambda: emulator.goal_positions()[1] > 2048)
    harness.publish(messages.EStop(t=0.0, engaged=True, source="test", reason="hand in the workspace"))
    wait_for(lambda: not any(emulator.torque_enabled().values()))

    writes = len(emulator.goal_writes())
    harness.publish(chunk([[-30.0, 0, 0, 0, 0, 0]] * 60))  # ignored while latched
    harness.wait_ticks(15)
    assert len(emulator.goal_writes()) == writes, "no goal may be written while the e-stop is latched"
    assert not any(emulator.torque_enabled().values())
    assert not harness.last_state().torque_enabled and harness.last_state().holding
    assert harness.component.counters.get("ignored.chunk_during_estop") >= 1

    harness.publish(messages.EStop(t=0.0, engaged=False, source="test"))
    harness.wait_ticks(10)
    assert not any(emulator.torque_enabled().values()), "reset alone must not re-energise the arm"
    harness.publish(chunk([[-30.0, 0, 0, 0, 0, 0]] * 120))
    wait_for(lambda: all(emulator.torque_enabled().values()))
    wait_for(lambda: emulator.goal_positions()[1] == degrees_to_ticks(-30.0))
    counters = harness.component.counters
    assert (counters.get("safety.estop"), counters.get("safety.estop_reset")) == (1, 1)


def valid_chunk_payload() -> dict:
    return messages.encode(chunk([[1.0] * 6] * 3))[1]  # type: ignore[return-value]


def test_bad_messages_are_counted_and_the_loop_keeps_running(make_actuator, emulator: RemoteArmEmulator) -> None:
    harness = make_actuator()
    harness.wait_ticks(2)
    topic = messages.TOPIC_ACTION_CHUNK
    harness.publish_raw(topic, b"{not json")
    harness.publish_raw(topic, {**valid_chunk_payload(), "schema": 99})
    nan = valid_chunk_payload()
    nan["actions"][1][2] = math.nan
    harness.publish_raw(topic, nan)
    huge = valid_chunk_payload()
    huge["actions"] = [[123456.789012345] * 6] * 1000
    assert len(json.dumps(huge)) > messages.MAX_JSON_BYTES
    harness.publish_raw(topic, huge)
    harness.publish_raw(topic, messages.encode(chunk([[0.0] * 3] * 2, names=["x", "y", "z"]))[1])
    harness.publish_raw(topic, {"kind": "estop", "schema": 1, "t": 0, "engaged": True})
    harness.publish_raw(messages.TOPIC_ESTOP, b"\xff\xfe")

    counters = harness.component.counters
    assert counters.get("rejected.malformed") == 2
    assert counters.get("rejected.unsupported_schema") == 1
    assert counters.get("rejected.invalid") == 2
    assert counters.get("rejected.oversized") == 1
    assert counters.get("rejected.unsafe_action") == 1
    assert counters.get("actions_applied") == 0
    assert all(emulator.torque_enabled().values())  # no e-stop was taken from the wrong topic

    harness.wait_ticks(5)
    harness.publish(chunk([[15.0, 0, 0, 0, 0, 0]] * 60))
    wait_for(lambda: emulator.goal_positions()[1] == degrees_to_ticks(15.0))
    assert harness.component.state == "RUNNING"


def test_health_reports_counters_and_metrics(make_actuator) -> None:
    harness = make_actuator()
    wait_for(lambda: any(h.metrics.get("ticks_per_s") for h in list(harness.health)))
    health = harness.health[-1]
    assert health.component == "actuator" and health.state == "RUNNING"
    assert health.counters.get("published.joint_state", 0) > 0
    assert {"tick_ms", "queued_actions", "holding", "torque_enabled", "estop"} <= set(health.metrics)


def test_corrupt_reply_without_retries_is_counted_reported_and_recovered(make_actuator, emulator: RemoteArmEmulator) -> None:
    harness = make_actuator(busRetries=0)  # with retries it would not even be a bus error (test_faults.py)
    harness.wait_ticks(2)
    emulator.corrupt_next_replies(1)
    wait_for(lambda: harness.component.counters.get("bus_errors") >= 1)
    bus = harness.component.bus
    wait_for(lambda: "ERRORED" in bus.states and bus.states[-1] == "RUNNING")
    harness.publish(chunk([[5.0, 0, 0, 0, 0, 0]] * 60))
    wait_for(lambda: emulator.goal_positions()[1] == degrees_to_ticks(5.0))


def test_vanished_port_is_reported_and_never_escapes_the_loop(make_actuator, emulator: RemoteArmEmulator) -> None:
    harness = make_actuator()
    harness.wait_ticks(2)
    emulator.unplug()
    wait_for(lambda: harness.component.state == "ERRORED")
    errors = harness.component.counters.get("bus_errors")
    wait_for(lambda: harness.component.counters.get("bus_errors") > errors)  # reconnects are attempted
    assert harness.thread.is_alive()
    assert "cannot open servo port" in harness.component.detail
    finish(harness)


def test_missing_port_at_start_is_errored_not_fatal(emulator: RemoteArmEmulator, tmp_path) -> None:
    harness = start(emulator, actuator_config(str(tmp_path / "ttyACM0")))
    try:
        wait_for(lambda: harness.component.state == "ERRORED")
        assert "cannot open servo port" in harness.component.detail
        assert harness.thread.is_alive()
    finally:
        finish(harness)


def test_stop_holds_then_turns_torque_off(make_actuator, emulator: RemoteArmEmulator) -> None:
    harness = make_actuator()
    harness.publish(chunk([[25.0, 0, 0, 0, 0, 0]] * 300))
    wait_for(lambda: emulator.goal_positions()[1] > degrees_to_ticks(10.0))
    finish(harness)
    assert not any(emulator.torque_enabled().values())
    shoulder = [goal for _, servo, goal in emulator.goal_writes() if servo == 1]
    last_goals = {servo: goal for _, servo, goal in emulator.goal_writes()[-6:]}
    # A hold, re-held until the arm settled: the emulated servo decelerates as a real one does, so
    # torque goes off only once the arm rests on its last goal (not coasting), short of the target.
    hold = shoulder[-1]
    assert 2048 < hold < degrees_to_ticks(25.0), shoulder[-5:]
    assert abs(emulator.snapshot()[1].present_position - hold) <= 3, (emulator.snapshot()[1], shoulder[-5:])
    assert all(last_goals[i] == 2048 for i in (2, 3, 4, 5, 6)), last_goals
    assert harness.component.state == "STOPPING"


def test_stop_can_leave_the_arm_holding_when_configured(make_actuator, emulator: RemoteArmEmulator) -> None:
    harness = make_actuator(torqueOffOnStop=False)
    harness.publish(chunk([[10.0, 0, 0, 0, 0, 0]] * 300))
    wait_for(lambda: emulator.goal_positions()[1] > degrees_to_ticks(3.0))
    finish(harness)
    assert all(emulator.torque_enabled().values())  # still holding: an arm that must not fall when limp
    assert abs(emulator.snapshot()[1].present_position - emulator.goal_positions()[1]) <= 3


def test_actions_reach_the_arm_in_configured_joint_order(make_actuator, emulator: RemoteArmEmulator) -> None:
    harness = make_actuator()
    harness.wait_ticks(2)
    reordered = list(reversed(chunk([[0.0] * 6]).names))
    harness.publish(chunk([[4.0, 0, 0, 0, 0, -4.0]] * 60, names=reordered))  # gripper first
    wait_for(lambda: emulator.goal_positions()[6] == degrees_to_ticks(4.0))
    assert emulator.goal_positions()[1] == degrees_to_ticks(-4.0)


def test_run_returns_when_stopped_before_the_first_tick(emulator: RemoteArmEmulator) -> None:
    harness = start(emulator, actuator_config(emulator.device_path))
    finish(harness)
    assert isinstance(harness.thread, threading.Thread)
