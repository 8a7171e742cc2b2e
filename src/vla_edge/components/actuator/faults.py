"""Servo fault policy, free of any bus: what a fault is, when to retry, when to stop, when to reopen.

The actuator's control loop (:mod:`.component`) applies these; they are plain objects so
each rule can be tested with numbers alone.

* :func:`classify` turns status-packet error bytes into named faults per joint. The
  serious ones (:data:`SERIOUS_FAULTS`: overheat, overload, overcurrent, input voltage,
  angle sensor) make a tick fail; the others (a checksum or instruction bit: the servo
  complaining about one packet) are only counted and logged.
* :class:`RetryPolicy` decides whether a failed transaction (no status packet, bad
  checksum) is worth one more try: only ``busRetries`` times, and only while a retry
  still fits before the tick's deadline, judged by how long that transaction took when
  it last succeeded (the packet timeout until it has been measured).
* :class:`FaultStreak` counts consecutive failing ticks and latches the fault stop at
  ``faultStopAfter``; one clean tick clears it.
* :class:`Backoff` spaces out attempts to reopen a lost port: ``reconnectIntervalS``
  after the loss, doubling per failed attempt up to ``reconnectMaxIntervalS``.
"""

from __future__ import annotations

import collections
from collections.abc import Mapping
from dataclasses import dataclass

from vla_edge.errors import ServoCommError
from vla_edge.motors.feetech import tables

SERIOUS_FAULTS: dict[int, tuple[str, str]] = {
    tables.ERR_OVERHEAT: ("overheat", "let it cool down and check the joint for a blockage or a too-heavy load"),
    tables.ERR_OVERLOAD: ("overload", "check for a collision, a blocked joint or a payload beyond the arm's torque"),
    tables.ERR_OVERCURRENT: ("overcurrent", "check for a stalled joint or damaged servo wiring"),
    tables.ERR_VOLTAGE: ("input_voltage", "check the servo power supply's voltage, its rating and its connector"),
    tables.ERR_ANGLE: ("angle_sensor", "the servo's magnetic encoder reads badly: check the servo, replace it if it persists"),
}
"""Error bits that make a tick fail: bit -> (counter name, what to check)."""
MINOR_FAULTS: dict[int, tuple[str, str]] = {
    0x10: ("checksum", "the servo saw a corrupted packet: check the cable chain for noise"),
    tables.ERR_INSTRUCTION: ("instruction", "the servo refused an instruction: check its firmware and model"),
}
"""Error bits that are counted and logged but do not fail a tick: one bad packet, not a sick servo."""

RETRYABLE_RESULTS = {"COMM_RX_TIMEOUT": "timeout", "COMM_RX_CORRUPT": "corrupt"}
"""SDK results worth retrying at once (the port is still open), and their counter names."""


@dataclass(frozen=True)
class JointFault:
    """One fault bit reported by one joint's servo."""

    joint: str
    servo_id: int
    name: str
    """Counter name, e.g. ``overheat`` (counted as ``servo_faults.overheat``)."""
    hint: str
    serious: bool

    def describe(self) -> str:
        return f"{self.joint} (servo {self.servo_id}): {self.name.replace('_', ' ')}; {self.hint}"


def classify(faults: Mapping[int, int], joints: Mapping[int, str]) -> list[JointFault]:
    """Every set bit of each servo's error byte as a :class:`JointFault`, serious ones first."""
    found: list[JointFault] = []
    for servo_id, bits in sorted(faults.items()):
        joint = joints.get(servo_id, f"servo{servo_id}")
        for table, serious in ((SERIOUS_FAULTS, True), (MINOR_FAULTS, False)):
            for bit, (name, hint) in table.items():
                if bits & bit:
                    found.append(JointFault(joint, servo_id, name, hint, serious))
        unknown = bits & ~(sum(SERIOUS_FAULTS) | sum(MINOR_FAULTS))
        if unknown:
            found.append(JointFault(joint, servo_id, "unknown", f"undocumented error bits 0x{unknown:02x}", False))
    found.sort(key=lambda fault: not fault.serious)
    return found


def retry_kind(exc: BaseException) -> str | None:
    """``timeout`` or ``corrupt`` for a failure worth retrying at once, else None."""
    if isinstance(exc, ServoCommError):
        return RETRYABLE_RESULTS.get(exc.result)
    return None


class RetryPolicy:
    """Whether a failed servo transaction may be tried again within the tick.

    A transaction's cost is the longest of its last ``window`` successful durations: a
    retry is allowed when that much time is left before the deadline. Before it was
    measured, the other transactions' cost stands in, and before anything was measured the
    packet timeout (the longest a failing attempt waits). A
    retry that fails again by timing out can still overrun the deadline by up to one
    packet timeout; the loop then counts a tick overrun, as for any slow tick.
    """

    def __init__(self, retries: int, fallback_cost_s: float, window: int = 16) -> None:
        if retries < 0 or fallback_cost_s <= 0:
            raise ValueError("retries must be >= 0 and fallback_cost_s > 0")
        self.retries = retries
        self.fallback_cost_s = fallback_cost_s
        self._window = window
        self._durations: dict[str, collections.deque[float]] = {}

    def record(self, operation: str, seconds: float) -> None:
        """Remember how long a successful ``operation`` took."""
        self._durations.setdefault(operation, collections.deque(maxlen=self._window)).append(max(0.0, seconds))

    def cost_s(self, operation: str) -> float:
        """Expected duration of ``operation``: its recent worst case; never measured, that of the other
        operations (a sync read of the same servos costs about the same); nothing measured, the packet timeout."""
        durations = self._durations.get(operation)
        if durations:
            return max(durations)
        others = [max(d) for d in self._durations.values() if d]
        return max(others) if others else self.fallback_cost_s

    def allows(self, retries_done: int, now: float, deadline: float, operation: str) -> bool:
        """May ``operation`` be tried again after ``retries_done`` retries, at ``now``, before ``deadline``?"""
        return retries_done < self.retries and now + self.cost_s(operation) <= deadline

    def fits(self, now: float, deadline: float, operation: str) -> bool:
        """Is there time left in the tick for one more ``operation`` (e.g. an optional telemetry read)?"""
        return now + self.cost_s(operation) <= deadline


class FaultStreak:
    """Consecutive failing ticks; the fault stop latches at ``stop_after`` and clears on a clean tick."""

    def __init__(self, stop_after: int) -> None:
        if stop_after < 1:
            raise ValueError("stop_after must be >= 1")
        self.stop_after = stop_after
        self.count = 0
        self.stopped = False

    def failed(self) -> bool:
        """Record a failing tick; True exactly when this tick starts the fault stop."""
        self.count += 1
        if not self.stopped and self.count >= self.stop_after:
            self.stopped = True
            return True
        return False

    def succeeded(self) -> bool:
        """Record a clean tick; True exactly when this ends a fault stop."""
        self.count = 0
        was_stopped, self.stopped = self.stopped, False
        return was_stopped


class Backoff:
    """When to try reopening a lost port next (monotonic seconds).

    Before the first loss an attempt is due at once (the first connect). After
    :meth:`lost`, the first attempt waits ``initial_s``; each :meth:`failed` attempt
    doubles the wait up to ``maximum_s``; :meth:`succeeded` starts over.
    """

    def __init__(self, initial_s: float, maximum_s: float) -> None:
        if initial_s <= 0 or maximum_s < initial_s:
            raise ValueError("need 0 < initial_s <= maximum_s")
        self.initial_s = initial_s
        self.maximum_s = maximum_s
        self.wait_s = 0.0
        """The wait before the attempt now scheduled (0: the first connect, at once)."""
        self.next_at = float("-inf")
        self.failures = 0
        """Failed attempts since the last success."""

    def due(self, now: float) -> bool:
        return now >= self.next_at

    def lost(self, now: float) -> None:
        """The port was just lost: the first attempt to reopen it waits ``initial_s``."""
        self.wait_s = self.initial_s
        self.next_at = now + self.wait_s

    def failed(self, now: float) -> float:
        """An attempt failed: the next waits twice as long as the last (``initial_s`` after an
        immediate first attempt, never more than ``maximum_s``); returns that wait."""
        self.wait_s = min(self.wait_s * 2.0, self.maximum_s) if self.wait_s > 0 else self.initial_s
        self.failures += 1
        self.next_at = now + self.wait_s
        return self.wait_s

    def succeeded(self) -> None:
        self.failures = 0
        self.wait_s = 0.0
        self.next_at = float("-inf")
