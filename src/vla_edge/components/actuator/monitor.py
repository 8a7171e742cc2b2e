"""Judges each control tick's outcome: which servo faults it saw, whether it failed, when the arm must stop.

The control loop notes the error bits of every reply during a tick (:meth:`FaultMonitor.note`)
and ends the tick with :meth:`FaultMonitor.checked` (the bus answered) or
:meth:`FaultMonitor.failed` (a failure was left after retries). The monitor counts each
fault as ``servo_faults.<name>``, logs it rate-limited with joint, servo id and what to
check, and keeps the streak of failing ticks (:class:`.faults.FaultStreak`). The
:class:`Verdict` tells the loop what to report and whether to start or end a fault stop;
acting on it (torque off, clearing the plan) is the loop's job, since only it owns the bus.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

from vla_edge.components.actuator.faults import FaultStreak, JointFault, classify
from vla_edge.components.actuator.ratelimit import RateLimitedLog
from vla_edge.components.base import Counters


@dataclass(frozen=True)
class Verdict:
    state: str
    """``RUNNING`` or ``ERRORED``."""
    detail: str = ""
    stop: bool = False
    """This tick starts the fault stop: stop writing goals, torque off."""
    recovered: bool = False
    """This tick ends a fault stop: the arm stays limp until the next fresh action."""


class FaultMonitor:
    """One tick at a time, on the control thread."""

    def __init__(
        self,
        joints: Mapping[int, str],
        stop_after: int,
        counters: Counters,
        warnings: RateLimitedLog,
        log: logging.Logger,
    ) -> None:
        self.joints = dict(joints)
        self.streak = FaultStreak(stop_after)
        self.counters = counters
        self.warnings = warnings
        self.log = log
        self._faults: dict[int, int] = {}

    @property
    def stopped(self) -> bool:
        return self.streak.stopped

    def begin_tick(self) -> None:
        self._faults = {}

    def note(self, faults: Mapping[int, int]) -> None:
        """Error bytes from one reply of this tick (servo id -> bits); judged once at its end."""
        for servo_id, bits in faults.items():
            self._faults[servo_id] = self._faults.get(servo_id, 0) | bits

    def checked(self) -> Verdict:
        """The tick's transactions worked: count and log its faults; serious ones fail the tick."""
        serious = self._account()
        if serious:
            return self._fail("; ".join(fault.describe() for fault in serious), toward_stop=True)
        if not self.streak.succeeded():
            return Verdict("RUNNING")
        self.counters.add("safety.fault_recovered")
        self.log.warning("servo bus answers cleanly again; the arm stays limp until the next fresh action")
        return Verdict("RUNNING", recovered=True)

    def failed(self, reason: str, toward_stop: bool) -> Verdict:
        """A failure was left after retries. ``toward_stop`` is false when the port is gone: nothing
        could act on the arm then, and reopening it is :class:`.faults.Backoff`'s business."""
        self._account()
        return self._fail(reason, toward_stop)

    def _account(self) -> list[JointFault]:
        """Count and log (rate-limited) every fault noted this tick; returns the serious ones."""
        serious = []
        for fault in classify(self._faults, self.joints):
            self.counters.add(f"servo_faults.{fault.name}")
            level = logging.ERROR if fault.serious else logging.WARNING
            self.warnings.emit(level, f"fault.{fault.servo_id}.{fault.name}", "servo fault: %s", fault.describe())
            if fault.serious:
                serious.append(fault)
        self._faults = {}
        return serious

    def _fail(self, reason: str, toward_stop: bool) -> Verdict:
        stop = toward_stop and self.streak.failed()
        if stop:
            self.counters.add("safety.fault_torque_off")
            self.log.error(
                "%d failing control ticks in a row (%s): goal writes stop and torque goes off; torque returns "
                "with the first fresh action after the servos answer cleanly again", self.streak.count, reason,
            )
        if self.streak.stopped:
            reason = f"fault stop, torque off: {reason}"
        return Verdict("ERRORED", reason, stop=stop)

    def metrics(self) -> dict[str, float | None]:
        return {"fault_streak": float(self.streak.count), "fault_stop": float(self.streak.stopped)}
