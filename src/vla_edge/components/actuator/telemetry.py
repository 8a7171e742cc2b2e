"""Servo telemetry at ``telemetryHz``: the figures that warn before a fault stops the arm.

Every ``1/telemetryHz`` seconds the control loop adds one sync read over the present-state
registers (:meth:`~vla_edge.motors.base.ServoBus.sync_read_telemetry`) when the tick still
has time for it; a tick without that time leaves it to the next, unless the read is a whole
period late (:meth:`TelemetrySampler.overdue`): then one slow tick is the lesser evil than
health going blind on a slow bus. Health reports the
worst servo of the latest reading: ``servo_temperature_c_max``, ``servo_voltage_v_min``,
``servo_load_pct_max`` (magnitude, either direction), ``servo_current_ma_max``, plus
``telemetry_age_s``. The error bytes of that reading go through the same fault path as
those of position reads, on every tick until the next reading (:attr:`TelemetrySampler.faults`):
what the servos said stays true until they say otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping

from vla_edge.motors.base import ServoTelemetry

METRICS = ("servo_temperature_c_max", "servo_voltage_v_min", "servo_load_pct_max", "servo_current_ma_max")


def summarise(readings: Mapping[int, ServoTelemetry]) -> dict[str, float | None]:
    """The worst servo's figure for each of :data:`METRICS` (None without readings)."""
    if not readings:
        return dict.fromkeys(METRICS)
    values = list(readings.values())
    return {
        "servo_temperature_c_max": max(r.temperature_c for r in values),
        "servo_voltage_v_min": min(r.voltage_v for r in values),
        "servo_load_pct_max": max(abs(r.load_pct) for r in values),
        "servo_current_ma_max": max(abs(r.current_ma) for r in values),
    }


class TelemetrySampler:
    """When the next telemetry read is due, and the latest one's summary (monotonic seconds)."""

    def __init__(self, hz: float) -> None:
        self.period_s = 1.0 / hz if hz > 0 else None
        self._next_at = float("-inf")
        self._taken_at: float | None = None
        self.latest: dict[int, ServoTelemetry] = {}
        self.faults: dict[int, int] = {}
        """The latest reading's non-zero error bytes (servo id -> bits)."""

    def due(self, now: float) -> bool:
        return self.period_s is not None and now >= self._next_at

    def overdue(self, now: float) -> bool:
        """Deferred for a whole period already: read now even if the tick runs late."""
        return self.period_s is not None and now >= self._next_at + self.period_s

    def update(self, readings: Mapping[int, ServoTelemetry], now: float) -> dict[int, int]:
        """Keep a reading taken at ``now``; returns its non-zero error bytes (servo id -> bits)."""
        assert self.period_s is not None
        # The next read is due one period after this one was due, not after it was taken, so a
        # read deferred by a busy tick does not slow the rate down; after a longer gap (the port
        # was lost) the rate restarts from now instead of catching up with a burst of reads.
        if self._next_at + self.period_s < now:
            self._next_at = now + self.period_s
        else:
            self._next_at += self.period_s
        self._taken_at = now
        self.latest = dict(readings)
        self.faults = {servo_id: r.error for servo_id, r in readings.items() if r.error}
        return self.faults

    def metrics(self, now: float) -> dict[str, float | None]:
        figures = summarise(self.latest)
        figures["telemetry_age_s"] = None if self._taken_at is None else now - self._taken_at
        return figures
