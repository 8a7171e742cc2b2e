"""Servo faults end to end: the actuator against the STS3215 emulator over a real pseudo-terminal with the
real FeetechBus (retries, error bits, fault stop and recovery, a servo gone for good, reopening a vanished
port with backoff, telemetry), and with FakeServoBus where only the decision matters (telemetry error bits,
the normMode check)."""

from __future__ import annotations

import itertools
import logging
import os
import re
import time
from pathlib import Path

import pytest
from support import wait_for
from support.actuator import MODEL, Harness, actuator_config, chunk, finish, start
from support.servos import FakeServoBus
from support.so101_calibration import SO101_CALIBRATION

from vla_edge import messages
from vla_edge.bus.memory import InMemoryBroker
from vla_edge.components.actuator.component import ActuatorComponent
from vla_edge.components.actuator.units import degrees_to_ticks
from vla_edge.motors.base import ServoTelemetry
from vla_edge.motors.feetech import tables as t
from vla_edge.motors.feetech.emulator import ArmEmulator
from vla_edge.motors.feetech.emulator.remote import RemoteArmEmulator

STEP_TICKS = degrees_to_ticks(5.0) - 2048  # maxStepDeg default, in ticks
SLOW = {"controlHz": 1.0, "telemetryHz": 1.0, "maxActionLagS": 1.0, "holdAfterS": 4.0, "packetTimeoutMs": 250.0}
"""Ticks of 1 s: room for the lost answer's 250 ms packet timeout and two retries inside one tick, even when
a loaded machine delays the emulated servos' answers by a few hundred milliseconds."""


def ramp(first: float, last: float, steps: int) -> list[list[float]]:
    return [[first + (last - first) * i / (steps - 1), 0.0, 0.0, 0.0, 0.0, 0.0] for i in range(steps)]


def counters(harness: Harness) -> dict[str, int]:
    return harness.component.counters.snapshot()


# --- retries within the tick ----------------------------------------------------------------


@pytest.mark.parametrize(("inject", "kind"), [("drop_next_replies", "timeout"), ("corrupt_next_replies", "corrupt")])
def test_a_lost_or_corrupt_reply_is_retried_within_the_tick(
    make_actuator, emulator: RemoteArmEmulator, inject: str, kind: str
) -> None:
    harness = make_actuator(**SLOW)
    harness.wait_ticks(2)
    harness.publish(chunk(ramp(0.0, 20.0, 5) + [[20.0, 0, 0, 0, 0, 0]] * 20, dt=1.0, lead_s=0.1))
    wait_for(lambda: emulator.goal_positions()[1] > 2048)
    before = counters(harness)  # a servo slow to answer the start-up check already counted as a bus error
    getattr(emulator, inject)(1)  # the next status packet, of whichever read comes next
    wait_for(lambda: harness.component.counters.get(f"bus_retries.{kind}") >= 1)
    wait_for(lambda: emulator.goal_positions()[1] == degrees_to_ticks(20.0))  # the arm kept following
    seen = counters(harness)
    assert seen.get("bus_retries", 0) >= 1
    assert seen.get("bus_errors", 0) == before.get("bus_errors", 0), "a retried transaction is not a bus error"
    assert "ERRORED" not in harness.component.bus.states
    assert harness.component.state == "RUNNING"


# --- servo error bits -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bit", "name"), [(t.ERR_OVERHEAT, "overheat"), (t.ERR_OVERLOAD, "overload"), (t.ERR_VOLTAGE, "input_voltage")]
)
def test_error_bits_are_reported_then_stop_the_arm_and_a_fresh_action_recovers_it(
    make_actuator, emulator: RemoteArmEmulator, bit: int, name: str
) -> None:
    harness = make_actuator(faultStopAfter=3)
    component = harness.component
    harness.wait_ticks(2)
    harness.publish(chunk([[10.0, 0, 0, 0, 0, 0]] * 600))  # 20 s of plan: goals keep coming until the stop
    wait_for(lambda: emulator.goal_positions()[1] == degrees_to_ticks(10.0), timeout=30)

    emulator.set_error_bits(3, bit)
    wait_for(lambda: component.detail.startswith("fault stop, torque off"), timeout=30)
    assert component.state == "ERRORED"
    assert re.search(rf"elbow_flex \(servo 3\): {name.replace('_', ' ')}", component.detail), component.detail
    assert component.counters.get(f"servo_faults.{name}") >= 3
    assert component.counters.get("safety.fault_torque_off") == 1
    wait_for(lambda: not any(emulator.torque_enabled().values()), timeout=30)
    writes = len(emulator.goal_writes())
    harness.wait_ticks(10)
    assert len(emulator.goal_writes()) == writes, "no goal may be written during a fault stop"
    assert component.counters.get("safety.fault_torque_off") == 1  # once, not every tick
    assert not harness.last_state().torque_enabled

    emulator.set_error_bits(3, 0)
    wait_for(lambda: component.counters.get("safety.fault_recovered") == 1, timeout=30)
    wait_for(lambda: component.state == "RUNNING", timeout=30)
    emulator.set_position(1, 2300)  # pushed by hand while limp
    wait_for(lambda: abs(harness.last_state().positions[0] - 22.1) < 0.2, timeout=30)
    harness.wait_ticks(5)
    assert not any(emulator.torque_enabled().values()), "the arm stays limp until a fresh action"
    assert len(emulator.goal_writes()) == writes

    harness.publish(chunk([[-10.0, 0, 0, 0, 0, 0]] * 120))
    wait_for(lambda: all(emulator.torque_enabled().values()), timeout=30)
    wait_for(lambda: emulator.goal_positions()[1] == degrees_to_ticks(-10.0), timeout=30)
    after = [goal for _, servo, goal in emulator.goal_writes()[writes:] if servo == 1]
    assert abs(after[0] - 2300) <= 1, f"torque returns holding the measured position, not the old goal: {after[:3]}"
    assert all(abs(b - a) <= STEP_TICKS for a, b in itertools.pairwise(after)), after


def test_telemetry_error_bits_go_through_the_same_fault_path() -> None:
    class TelemetryFaults(FakeServoBus):
        """Position reads answer cleanly; only the telemetry's status packets carry the bit."""

        def sync_read_telemetry(self) -> dict[int, ServoTelemetry]:
            readings = super().sync_read_telemetry()
            readings[2] = ServoTelemetry(**{**readings[2].__dict__, "error": t.ERR_OVERLOAD})
            return readings

    servos = TelemetryFaults()
    component = ActuatorComponent(
        InMemoryBroker().bus(), actuator_config("fake://servos", telemetryHz=30.0, faultStopAfter=2), servos=servos
    )
    component._tick()
    assert servos.telemetry_reads == 1
    assert component.counters.get("servo_faults.overload") == 1
    assert component.state == "ERRORED" and "shoulder_lift (servo 2): overload" in component.detail
    component._tick()
    assert component.counters.get("safety.fault_torque_off") == 1
    assert servos.torque_changes[-1] is False


# --- a servo gone for good ----------------------------------------------------------------


def test_a_servo_gone_for_good_stops_the_arm_and_the_others_go_limp(make_actuator, emulator: RemoteArmEmulator) -> None:
    harness = make_actuator(faultStopAfter=3, packetTimeoutMs=100.0)
    component = harness.component
    harness.wait_ticks(2)
    harness.publish(chunk([[8.0, 0, 0, 0, 0, 0]] * 900))
    wait_for(lambda: emulator.goal_positions()[1] == degrees_to_ticks(8.0))
    assert all(emulator.torque_enabled().values())

    emulator.set_offline(4)
    wait_for(lambda: component.detail.startswith("fault stop, torque off"))
    assert component.counters.get("safety.fault_torque_off") == 1
    assert component.counters.get("bus_errors") >= 3
    wait_for(lambda: [i for i, on in emulator.torque_enabled().items() if on] == [4])  # 4 hears nothing
    writes = len(emulator.goal_writes())
    wait_for(lambda: component.counters.get("bus_errors") >= 6)  # several more failing ticks
    assert len(emulator.goal_writes()) == writes
    assert component.state == "ERRORED" and "servo 4" in component.detail, component.detail
    assert harness.thread.is_alive()


# --- a vanished port, reopened with backoff ----------------------------------------------------


def test_a_vanished_port_is_reopened_with_growing_waits_and_the_arm_is_held_again(
    emulator: RemoteArmEmulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    port = tmp_path / "ttyACM0"  # a stable name, as udev gives the arm; the emulator behind it changes
    port.symlink_to(emulator.device_path)
    harness = start(emulator, actuator_config(str(port), reconnectIntervalS=0.1, reconnectMaxIntervalS=0.4))
    replacement = ArmEmulator(6, initial_position=2300)
    try:
        with caplog.at_level(logging.WARNING, logger="vla_edge.actuator"):
            harness.wait_ticks(2)
            emulator.unplug()
            wait_for(lambda: harness.component.counters.get("bus_reconnect_attempts") >= 5)
            assert harness.component.state == "ERRORED"
            assert harness.component.counters.get("bus_reconnects") == 0
            assert harness.component.counters.get("safety.fault_torque_off") == 0  # nothing to act on: no port

            replacement.start()
            link = tmp_path / "ttyACM0.new"
            link.symlink_to(replacement.device_path)
            os.replace(link, port)
            wait_for(lambda: harness.component.counters.get("bus_reconnects") == 1)
            wait_for(lambda: harness.component.state == "RUNNING")
        wait_for(lambda: all(replacement.torque_enabled().values()))
        assert replacement.goal_positions() == {i: 2300 for i in replacement.ids}  # held where it is
        waits = [
            float(match.group(1))
            for record in caplog.records
            if (match := re.search(r"attempt \d+ to open it failed; next attempt in ([\d.]+) s", record.getMessage()))
        ]
        assert waits[:3] == [0.2, 0.4, 0.4], waits  # 0.1 s after the loss, then doubling up to the maximum
        assert all(w == 0.4 for w in waits[2:])
        harness.publish(chunk([[5.0, 0, 0, 0, 0, 0]] * 60))
        wait_for(lambda: replacement.goal_positions()[1] == degrees_to_ticks(5.0))  # driven again, from 22°
    finally:
        finish(harness)
        replacement.stop()


# --- telemetry ------------------------------------------------------------------------------


def test_telemetry_figures_reach_health(make_actuator, emulator: RemoteArmEmulator) -> None:
    harness = make_actuator(telemetryHz=5.0)
    harness.wait_ticks(2)
    emulator.set_voltage(11.4)
    emulator.set_external_load(2, -420)  # 42 % of stall torque on the shoulder

    def loaded() -> messages.ComponentHealth | None:
        with harness.lock:
            last = harness.health[-1] if harness.health else None
        return last if last is not None and last.metrics.get("servo_load_pct_max") == 42.0 else None

    health = wait_for(loaded)
    figures = health.metrics
    assert figures["servo_voltage_v_min"] == 11.4
    assert 25.0 <= figures["servo_temperature_c_max"] <= 60.0
    assert figures["servo_current_ma_max"] > 0
    assert figures["telemetry_age_s"] is not None and figures["telemetry_age_s"] >= 0
    assert figures["fault_stop"] == 0.0


# --- the model's normMode -------------------------------------------------------------------


def norm_mode_actuator(**overrides: object) -> tuple[InMemoryBroker, ActuatorComponent]:
    broker = InMemoryBroker()
    component = ActuatorComponent(broker.bus(), actuator_config("fake://servos", **overrides), servos=FakeServoBus())
    component.subscribe()
    return broker, component


def send(broker: InMemoryBroker, message: messages.Message) -> None:
    topic, payload = messages.encode(message)
    broker.bus().publish(topic, payload)


def trained_in(norm_mode: str | None) -> messages.ModelStatus:
    return messages.ModelStatus(t=time.time(), state="active", model=MODEL, robot="so101_follower", norm_mode=norm_mode)


ACTIONS = [[1.0, 0.0, 0.0, 0.0, 0.0, 50.0]] * 10


@pytest.mark.parametrize(
    ("overrides", "model_mode", "accepted", "advice"),
    [
        ({}, "degrees", False, "calibration"),  # raw degrees are not LeRobot units
        ({}, None, True, None),  # the status does not say: no check
        ({"calibration": SO101_CALIBRATION}, "degrees", True, None),
        ({"calibration": SO101_CALIBRATION, "normMode": "range_m100_100"}, "degrees", False, "set normMode to degrees"),
        ({"calibration": SO101_CALIBRATION, "normMode": "range_m100_100"}, "range_m100_100", True, None),
    ],
)
def test_chunks_are_refused_when_the_model_was_trained_in_other_units(
    caplog: pytest.LogCaptureFixture, overrides: dict, model_mode: str | None, accepted: bool, advice: str | None
) -> None:
    broker, component = norm_mode_actuator(**overrides)
    try:
        send(broker, trained_in(model_mode))
        with caplog.at_level(logging.WARNING, logger="vla_edge.actuator"):
            send(broker, chunk(ACTIONS))
            send(broker, chunk(ACTIONS, lead_s=0.5))
        rejected = component.counters.get("rejected.norm_mode_mismatch")
        if accepted:
            assert rejected == 0 and len(component.schedule) > 0
        else:
            assert rejected == 2 and len(component.schedule) == 0
            warnings = [r.getMessage() for r in caplog.records if "rejected action chunk" in r.getMessage()]
            assert len(warnings) == 1, warnings  # rate-limited
            assert advice in warnings[0] and "test-policy" in warnings[0]
    finally:
        component.close()
