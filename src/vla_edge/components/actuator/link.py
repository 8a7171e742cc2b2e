"""The actuator's connection to its servo bus: retries within the tick, reopening with backoff.

:class:`ServoLink` wraps a :class:`~vla_edge.motors.base.ServoBus` for the control thread.
Each call is timed; a failure worth retrying (:func:`.faults.retry_kind`: no status
packet, bad checksum, with the port still open) is tried again while
:class:`.faults.RetryPolicy` allows it before :attr:`ServoLink.deadline`, counted as
``bus_retries`` and ``bus_retries.<timeout|corrupt>``. Whatever is left after the retries
is raised to the control loop. A call that loses the port schedules its reopening
(:class:`.faults.Backoff`); :meth:`ServoLink.open` counts ``bus_reconnect_attempts``
and, once the port is back, ``bus_reconnects``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from typing import TypeVar

from vla_edge.components.actuator.config import ActuatorConfig
from vla_edge.components.actuator.faults import Backoff, RetryPolicy, retry_kind
from vla_edge.components.base import Counters
from vla_edge.errors import ServoBusError, ServoFault
from vla_edge.motors.base import ServoBus, ServoBusConfig, ServoTelemetry

T = TypeVar("T")


def make_servo_bus(config: ActuatorConfig) -> ServoBus:
    """The configured arm's bus: STS3215 servos through feetech-servo-sdk (imported only when needed)."""
    from vla_edge.motors.feetech.bus import FeetechBus

    return FeetechBus(
        ServoBusConfig(
            port=config.serial_port,
            motor_ids=config.motor_ids,
            baudrate=config.baudrate,
            packet_timeout_ms=config.packet_timeout_ms,
        )
    )


class ServoLink:
    """Retrying, timed access to ``servos`` for one thread (the control loop)."""

    def __init__(
        self,
        servos: ServoBus,
        *,
        retries: int,
        packet_timeout_s: float,
        reconnect_interval_s: float,
        reconnect_max_interval_s: float,
        counters: Counters,
        log: logging.Logger,
    ) -> None:
        self.servos = servos
        self.retry = RetryPolicy(retries, packet_timeout_s)
        self.reopen = Backoff(reconnect_interval_s, reconnect_max_interval_s)
        self.counters = counters
        self.log = log
        self.deadline = math.inf
        """Monotonic time by which the current tick's transactions should be done."""
        self._opened_before = False

    @property
    def is_connected(self) -> bool:
        return self.servos.is_connected

    # --- opening ----------------------------------------------------------------------------

    def open_due(self, now: float) -> bool:
        return self.reopen.due(now)

    def open(self, now: float) -> None:
        """Open the port; on failure schedule the next attempt (growing waits) and raise."""
        if self._opened_before:
            self.counters.add("bus_reconnect_attempts")
        try:
            self.servos.connect()
        except ServoBusError as exc:
            wait = self.reopen.failed(now)
            self.log.warning(
                "servo port %s: attempt %d to open it failed; next attempt in %.1f s (%s)",
                self.servos.config.port, self.reopen.failures, wait, exc,
            )
            raise
        if self._opened_before:
            self.counters.add("bus_reconnects")
            self.log.warning(
                "servo port %s reopened after %d failed attempt(s)", self.servos.config.port, self.reopen.failures
            )
        self._opened_before = True
        self.reopen.succeeded()

    # --- transactions -------------------------------------------------------------------------

    def read_positions(self) -> dict[int, int]:
        return self.call("read_positions", self.servos.sync_read_positions)

    def read_telemetry(self) -> dict[int, ServoTelemetry]:
        return self.call("read_telemetry", self.servos.sync_read_telemetry)

    def write_goals(self, goals: Mapping[int, int]) -> None:
        self.call("write_goals", lambda: self.servos.sync_write_goals(goals))

    def set_torque(self, enabled: bool) -> None:
        self.call("set_torque", lambda: self.servos.set_torque(enabled))

    def fits(self, operation: str) -> bool:
        """Is there still time in this tick for ``operation``?"""
        return self.retry.fits(time.monotonic(), self.deadline, operation)

    def call(self, operation: str, action: Callable[[], T]) -> T:
        """Run ``action``, retrying transient failures while they fit before :attr:`deadline`."""
        retries = 0
        while True:
            started = time.monotonic()
            try:
                result = action()
            except ServoFault:
                self.retry.record(operation, time.monotonic() - started)  # the servos did answer
                raise
            except ServoBusError as exc:
                now = time.monotonic()
                if not self.servos.is_connected:
                    self.reopen.lost(now)
                    raise
                kind = retry_kind(exc)
                if kind is None or not self.retry.allows(retries, now, self.deadline, operation):
                    raise
                retries += 1
                self.counters.add("bus_retries")
                self.counters.add(f"bus_retries.{kind}")
                self.log.debug("servo bus: %s; retry %d of %d", exc, retries, self.retry.retries)
                continue
            self.retry.record(operation, time.monotonic() - started)
            return result
