"""An in-memory :class:`~vla_edge.motors.base.ServoBus`: the fake at the serial-bus boundary.

It records every goal write and every torque change; each position read moves the
present positions a bounded number of ticks toward the last goals (when torque is on),
as a position-controlled servo would.
"""

from __future__ import annotations

from collections.abc import Mapping

from vla_edge.motors.base import ServoBus, ServoBusConfig

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

    @property
    def is_connected(self) -> bool:
        return self.connected

    def connect(self) -> None:
        self.connected = True

    def disconnect(self) -> None:
        self.connected = False

    def sync_read_positions(self) -> dict[int, int]:
        if self.torque:
            for i, goal in self.goals.items():
                delta = max(
                    -self.speed_ticks, min(self.speed_ticks, goal - self.present[i])
                )
                self.present[i] += delta
        return dict(self.present)

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
