"""The actuator's fault rules with numbers alone: classification, retries, fault streak, reopen backoff,
telemetry summary and rate-limited logging. No bus, no threads, no sleeps."""

from __future__ import annotations

import logging

import pytest

from vla_edge.components.actuator.faults import (
    Backoff,
    FaultStreak,
    RetryPolicy,
    classify,
    retry_kind,
)
from vla_edge.components.actuator.monitor import FaultMonitor
from vla_edge.components.actuator.ratelimit import RateLimitedLog
from vla_edge.components.actuator.telemetry import TelemetrySampler, summarise
from vla_edge.components.base import Counters
from vla_edge.errors import ServoBusError, ServoCommError, ServoFault
from vla_edge.motors.base import ServoTelemetry
from vla_edge.motors.feetech import tables as t

JOINTS = {1: "shoulder_pan", 2: "shoulder_lift", 3: "elbow_flex"}


# --- classify -----------------------------------------------------------------------------


def test_classify_names_each_bit_with_its_joint_serious_first() -> None:
    faults = classify({3: t.ERR_OVERHEAT | 0x10, 1: t.ERR_VOLTAGE}, JOINTS)
    assert [(f.joint, f.servo_id, f.name, f.serious) for f in faults] == [
        ("shoulder_pan", 1, "input_voltage", True),
        ("elbow_flex", 3, "overheat", True),
        ("elbow_flex", 3, "checksum", False),
    ]
    assert "elbow_flex (servo 3): overheat; let it cool" in faults[1].describe()
    assert "power supply" in faults[0].describe()


@pytest.mark.parametrize(
    ("bit", "name"),
    [(t.ERR_OVERHEAT, "overheat"), (t.ERR_OVERLOAD, "overload"), (t.ERR_OVERCURRENT, "overcurrent"),
     (t.ERR_VOLTAGE, "input_voltage"), (t.ERR_ANGLE, "angle_sensor")],
)
def test_the_five_serious_bits(bit: int, name: str) -> None:
    (fault,) = classify({2: bit}, JOINTS)
    assert (fault.name, fault.serious, fault.joint) == (name, True, "shoulder_lift")


def test_instruction_bit_and_unknown_servo_are_minor_and_still_named() -> None:
    (fault,) = classify({9: t.ERR_INSTRUCTION}, JOINTS)
    assert (fault.joint, fault.name, fault.serious) == ("servo9", "instruction", False)


# --- retries ------------------------------------------------------------------------------


def test_only_timeouts_and_corrupt_replies_are_retried() -> None:
    assert retry_kind(ServoCommError("x", "COMM_RX_TIMEOUT")) == "timeout"
    assert retry_kind(ServoCommError("x", "COMM_RX_CORRUPT")) == "corrupt"
    assert retry_kind(ServoCommError("x", "COMM_TX_FAIL")) is None
    assert retry_kind(ServoFault("x", {1: t.ERR_OVERLOAD}, {1: 2048})) is None
    assert retry_kind(ServoBusError("port gone")) is None


def test_retries_are_bounded_by_count_and_by_the_deadline() -> None:
    policy = RetryPolicy(retries=2, fallback_cost_s=0.05)
    # Never measured: a transaction is assumed to cost the packet timeout.
    assert policy.allows(0, now=10.0, deadline=10.05, operation="read")
    assert not policy.allows(0, now=10.0, deadline=10.049, operation="read")
    policy.record("read", 0.002)
    policy.record("read", 0.004)
    assert policy.cost_s("read") == 0.004  # the recent worst case
    assert policy.allows(0, 10.0, 10.005, "read") and policy.allows(1, 10.0, 10.005, "read")
    assert not policy.allows(2, 10.0, 10.005, "read")  # busRetries used up
    assert not policy.allows(0, 10.0, 10.003, "read")  # would end after the tick's deadline
    policy.record("telemetry", 0.003)
    assert policy.cost_s("telemetry") == 0.003  # measured per operation
    assert policy.cost_s("torque") == 0.004  # not yet measured: as costly as the others
    assert not RetryPolicy(0, 0.05).allows(0, 0.0, 100.0, "read")


def test_retry_cost_forgets_old_slow_transactions() -> None:
    policy = RetryPolicy(retries=1, fallback_cost_s=0.05, window=4)
    policy.record("read", 0.040)
    for _ in range(4):
        policy.record("read", 0.002)
    assert policy.cost_s("read") == 0.002


# --- fault streak -------------------------------------------------------------------------


def test_fault_stop_latches_at_the_threshold_and_clears_on_a_clean_tick() -> None:
    streak = FaultStreak(stop_after=3)
    assert [streak.failed() for _ in range(5)] == [False, False, True, False, False]
    assert streak.stopped and streak.count == 5
    assert streak.succeeded() is True and not streak.stopped
    assert streak.succeeded() is False
    assert [streak.failed(), streak.succeeded(), streak.failed(), streak.failed()] == [False, False, False, False]
    assert not streak.stopped  # a clean tick in between starts the count over


# --- reopen backoff -----------------------------------------------------------------------


def test_backoff_first_connect_at_once_then_doubling_up_to_the_maximum() -> None:
    backoff = Backoff(initial_s=1.0, maximum_s=5.0)
    assert backoff.due(0.0)
    waits = [backoff.failed(float(i)) for i in range(5)]
    assert waits == [1.0, 2.0, 4.0, 5.0, 5.0]
    assert not backoff.due(4.0 + 4.9) and backoff.due(4.0 + 5.0)
    backoff.succeeded()
    assert backoff.due(0.0) and backoff.failures == 0


def test_backoff_after_a_loss_waits_the_interval_then_doubles() -> None:
    backoff = Backoff(initial_s=0.5, maximum_s=3.0)
    backoff.lost(100.0)
    assert not backoff.due(100.4) and backoff.due(100.5)
    assert [backoff.failed(100.5), backoff.failed(101.5), backoff.failed(103.5), backoff.failed(106.5)] == [
        1.0, 2.0, 3.0, 3.0,
    ]
    assert backoff.failures == 4
    backoff.succeeded()
    backoff.lost(200.0)
    assert backoff.wait_s == 0.5  # reset by the success


# --- the per-tick monitor -----------------------------------------------------------------


def monitor(stop_after: int = 2) -> tuple[FaultMonitor, Counters]:
    counters = Counters()
    log = logging.getLogger("test.monitor")
    return FaultMonitor(JOINTS, stop_after, counters, RateLimitedLog(log), log), counters


def test_monitor_counts_faults_once_per_tick_and_stops_after_the_streak() -> None:
    faults, counters = monitor(stop_after=2)
    faults.begin_tick()
    faults.note({3: t.ERR_OVERHEAT})
    faults.note({3: t.ERR_OVERHEAT})  # the telemetry read of the same tick saw it again
    first = faults.checked()
    assert (first.state, first.stop) == ("ERRORED", False)
    assert "elbow_flex (servo 3): overheat" in first.detail
    assert counters.get("servo_faults.overheat") == 1
    faults.begin_tick()
    faults.note({3: t.ERR_OVERHEAT})
    second = faults.checked()
    assert second.stop and second.detail.startswith("fault stop, torque off: elbow_flex")
    assert counters.get("safety.fault_torque_off") == 1
    faults.begin_tick()
    recovered = faults.checked()
    assert (recovered.state, recovered.recovered) == ("RUNNING", True)
    assert counters.get("safety.fault_recovered") == 1


def test_minor_bits_are_counted_without_failing_the_tick() -> None:
    faults, counters = monitor()
    faults.begin_tick()
    faults.note({1: 0x10})
    assert faults.checked().state == "RUNNING"
    assert counters.get("servo_faults.checksum") == 1


def test_a_lost_port_does_not_count_toward_the_fault_stop() -> None:
    faults, _ = monitor(stop_after=1)
    verdict = faults.failed("servo port gone", toward_stop=False)
    assert (verdict.state, verdict.stop, faults.stopped) == ("ERRORED", False, False)
    assert faults.failed("no status packet", toward_stop=True).stop


# --- telemetry ----------------------------------------------------------------------------


def reading(temperature: float = 30.0, voltage: float = 12.0, load: float = 0.0, current: float = 30.0,
            error: int = 0) -> ServoTelemetry:
    return ServoTelemetry(position=2048, velocity=0, load_pct=load, voltage_v=voltage, temperature_c=temperature,
                          moving=False, current_ma=current, error=error)


def test_summary_reports_the_worst_servo_of_each_figure() -> None:
    readings = {1: reading(41.0, 11.8, 12.5, 300.0), 2: reading(55.0, 12.1, -60.2, 900.0), 3: reading(30.0, 11.2)}
    assert summarise(readings) == {
        "servo_temperature_c_max": 55.0,
        "servo_voltage_v_min": 11.2,
        "servo_load_pct_max": 60.2,  # a magnitude: load against the motion counts too
        "servo_current_ma_max": 900.0,
    }
    assert set(summarise({}).values()) == {None}


def test_sampler_keeps_its_rate_and_returns_the_error_bytes() -> None:
    sampler = TelemetrySampler(hz=2.0)
    assert sampler.due(0.0)
    assert sampler.update({1: reading(), 2: reading(error=t.ERR_OVERLOAD)}, now=0.0) == {2: t.ERR_OVERLOAD}
    assert not sampler.due(0.49) and sampler.due(0.5)
    assert not sampler.overdue(0.99) and sampler.overdue(1.0)  # deferred by busy ticks for a whole period
    sampler.update({1: reading()}, now=0.6)  # taken late: the next one is still due on the 0.5 s grid
    assert not sampler.due(0.99) and sampler.due(1.0)
    sampler.update({1: reading()}, now=7.0)  # after a long gap the grid restarts instead of bursting
    assert not sampler.due(7.4) and sampler.due(7.5)
    assert sampler.metrics(now=8.0)["telemetry_age_s"] == 1.0
    assert not TelemetrySampler(hz=0.0).due(1e9)


# --- rate-limited log ---------------------------------------------------------------------


def test_rate_limited_log_holds_back_repeats_and_says_how_many(caplog) -> None:
    now = [0.0]
    limited = RateLimitedLog(logging.getLogger("test.ratelimit"), interval_s=5.0, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="test.ratelimit"):
        assert limited.warning("a", "problem %d", 1)
        assert not limited.warning("a", "problem %d", 2)
        assert limited.warning("b", "other")  # kinds are limited separately
        assert not limited.warning("a", "problem %d", 3)
        now[0] = 5.0
        assert limited.error("a", "problem %d", 4)
    messages = [r.getMessage() for r in caplog.records]
    assert messages == ["problem 1", "other", "problem 4 (and 2 more like it since the last one)"]
    assert caplog.records[-1].levelno == logging.ERROR
