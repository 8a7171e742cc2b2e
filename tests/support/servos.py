"""An in-memory :class:`~vla_edge.motors.base.ServoBus`: the fake at the serial-bus boundary.

It records every goal write and every torque change; each position read moves the
present positions a bounded number of ticks toward the last goals (when torque is on),
as a position-controlled servo would. Faults can be injected as on the emulator:
:attr:`FakeServoBus.error_bits` (status packets carrying error bits: reads raise
:class:`~vla_edge.errors.ServoFault` with the positions) and :meth:`FakeServoBus.fail_reads`
(the next reads get no usable answer: :class:`~vla_edge.errors.ServoCommError`).
"""

from __future__ import annotations

from collections.abc import Mapping

from vla_edge.errors import ServoCommError, ServoFault
from vla_edge.motors.base import ServoBus, ServoBusConfig, ServoTelemetry

CENTER = 2048


class FakeServoBus(ServoBus):
    def __init__(
        self,
        motor_ids: tuple[int, ...] = (1, 2, 3, 4, 5, 6),
        start: Mapping[int, int] | None = None,
        speed_ticks: int = 40,
    ) -> None:
        super().__init__(ServoBusConfig(port="fake://servos", motor_ids=motor_ids))
        self.present: dict[int, int] = {i: CENTER for i in motor_ids}
        if start:
            self.present.update(start)
        self.goals: dict[int, int] = dict(self.present)
        self.torque = False
        self.speed_ticks = speed_ticks
        self.connected = False
        self.goal_writes: list[dict[int, int]] = []
        """Every sync write of goals, in order."""
        self.torque_changes: list[bool] = []
        self.error_bits: dict[int, int] = {}
        """Servo id -> error byte its status packets carry (as the emulator's ``set_error_bits``)."""
        self.temperature_c: dict[int, float] = {i: 30.0 for i in motor_ids}
        self.voltage_v: dict[int, float] = {i: 12.0 for i in motor_ids}
        self.load_pct: dict[int, float] = {i: 0.0 for i in motor_ids}
        self.current_ma: dict[int, float] = {i: 0.0 for i in motor_ids}
        self.telemetry_reads = 0
        self._failing_reads: list[str] = []

    @property
    def is_connected(self) -> bool:
        return self.connected

    def connect(self) -> None:
        self.connected = True

    def disconnect(self) -> None:
        self.connected = False

    def fail_reads(self, count: int = 1, result: str = "COMM_RX_TIMEOUT") -> None:
        """The next ``count`` reads (positions or telemetry) fail with ``result``, the port staying open."""
        self._failing_reads.extend([result] * count)

    def _maybe_fail(self, what: str) -> None:
        if self._failing_reads:
            result = self._failing_reads.pop(0)
            raise ServoCommError(f"{what} on fake://servos: {result}", result=result)

    def sync_read_positions(self) -> dict[int, int]:
        self._maybe_fail("sync read Present_Position")
        if self.torque:
            for i, goal in self.goals.items():
                delta = max(
                    -self.speed_ticks, min(self.speed_ticks, goal - self.present[i])
                )
                self.present[i] += delta
        faults = {i: bits for i, bits in self.error_bits.items() if bits}
        if faults:
            raise ServoFault(f"fake servos {sorted(faults)} report error bits", faults, dict(self.present))
        return dict(self.present)

    def sync_read_telemetry(self) -> dict[int, ServoTelemetry]:
        self._maybe_fail("sync read telemetry")
        self.telemetry_reads += 1
        return {
            i: ServoTelemetry(
                position=self.present[i],
                velocity=0,
                load_pct=self.load_pct[i],
                voltage_v=self.voltage_v[i],
                temperature_c=self.temperature_c[i],
                moving=self.torque and self.present[i] != self.goals[i],
                current_ma=self.current_ma[i],
                error=self.error_bits.get(i, 0),
            )
            for i in self.present
        }

    def sync_write_goals(self, goals: Mapping[int, int]) -> None:
        for i, value in goals.items():
            if i not in self.present:
                raise AssertionError(f"goal for unknown servo {i}")
            if not isinstance(value, int) or not 0 <= value <= 4095:
                raise AssertionError(
                    f"goal {value!r} for servo {i} is not an encoder tick"
                )
        self.goal_writes.append(dict(goals))
        self.goals.update(goals)

    def set_torque(self, enabled: bool) -> None:
        self.torque = enabled
        self.torque_changes.append(enabled)
