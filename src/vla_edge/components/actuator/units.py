"""Joint units: the one place where servo ticks become joint positions and back.

Without a calibration file (``calibrationFile`` empty, the default) a joint position is in
degrees of the raw STS3215 reading, 2048 ticks = 0° and 4096 ticks per 360°
(:func:`ticks_to_degrees`, :func:`degrees_to_ticks`).

With a LeRobot calibration file, positions are in LeRobot's units for the same arm, value
for value (:mod:`.calibration`): ``normMode`` ``degrees`` (LeRobot SO-101 ``use_degrees``,
0° at the middle of the calibrated range) or ``range_m100_100`` for the body joints, and
always ``range_0_100`` for the joint named ``gripper`` as in LeRobot's SO-101. Joint
limits (``minDeg``/``maxDeg``) and ``maxStepDeg`` are in these same units.

:class:`JointUnits` converts whole joint vectors for the actuator, in either case.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from vla_edge.components.actuator.calibration import (
    MotorCalibration,
    NormMode,
    normalize,
    unnormalize,
)

if TYPE_CHECKING:
    from vla_edge.components.actuator.config import ActuatorConfig

TICKS_PER_TURN = 4096
CENTER_TICKS = 2048
MAX_TICKS = TICKS_PER_TURN - 1

GRIPPER = "gripper"
"""The joint that LeRobot's SO-101 always normalises to ``range_0_100``."""


def ticks_to_degrees(ticks: int) -> float:
    """Uncalibrated: degrees of a raw reading, 2048 ticks = 0°."""
    return (ticks - CENTER_TICKS) * 360.0 / TICKS_PER_TURN


def degrees_to_ticks(degrees: float) -> int:
    """Uncalibrated: nearest tick, clamped to the encoder range 0..4095."""
    ticks = round(degrees * TICKS_PER_TURN / 360.0) + CENTER_TICKS
    return min(max(ticks, 0), MAX_TICKS)


def joint_mode(name: str, norm_mode: NormMode) -> NormMode:
    """The normalisation of joint ``name``: ``range_0_100`` for the gripper, else ``norm_mode``."""
    return "range_0_100" if name == GRIPPER else norm_mode


class JointUnits:
    """Converts the actuator's joints between servo ticks and joint units.

    ``calibration`` None: degrees with 2048 ticks = 0° (today's behaviour). Otherwise each
    joint uses its LeRobot calibration and mode (see :func:`joint_mode`).
    """

    def __init__(
        self,
        names: Sequence[str],
        ids: Sequence[int],
        calibration: Mapping[str, MotorCalibration] | None = None,
        norm_mode: NormMode = "degrees",
    ) -> None:
        if len(names) != len(ids):
            raise ValueError(f"{len(names)} joint names but {len(ids)} servo ids")
        self.names = tuple(names)
        self.ids = tuple(ids)
        self.norm_mode = norm_mode
        self.calibrated = calibration is not None
        if calibration is not None:
            missing = [name for name in self.names if name not in calibration]
            if missing:
                raise ValueError(f"no calibration for joints {missing}")
            self._calibrations: tuple[MotorCalibration, ...] = tuple(calibration[name] for name in self.names)
            self.modes: tuple[NormMode, ...] = tuple(joint_mode(name, norm_mode) for name in self.names)
        else:
            self._calibrations = ()
            self.modes = ()

    @classmethod
    def from_config(cls, config: ActuatorConfig) -> JointUnits:
        """Units of ``config``: its inline ``calibration`` or ``calibrationFile`` when set
        (ConfigurationError if unusable), else uncalibrated degrees."""
        return cls(config.names, config.motor_ids, config.joint_calibration(), config.norm_mode)

    def to_units(self, index: int, ticks: int) -> float:
        """Joint ``index``'s position for a raw reading."""
        if not self.calibrated:
            return ticks_to_degrees(ticks)
        return normalize(ticks, self._calibrations[index], self.modes[index])

    def to_ticks(self, index: int, value: float) -> int:
        """Joint ``index``'s goal ticks for a position, never outside the encoder's 0..4095.

        LeRobot does not clamp calibrated ``degrees`` goals; a goal outside the encoder range
        would wrap on the servo, so it is clamped here (the joint limits normally keep it inside).
        """
        if not self.calibrated:
            return degrees_to_ticks(value)
        return min(max(unnormalize(value, self._calibrations[index], self.modes[index]), 0), MAX_TICKS)

    def positions(self, ticks: Mapping[int, int]) -> list[float]:
        """Joint positions, in joint order, from ``ServoBus.sync_read_positions()`` (servo id -> ticks)."""
        return [self.to_units(index, ticks[motor_id]) for index, motor_id in enumerate(self.ids)]

    def goals(self, values: Sequence[float]) -> dict[int, int]:
        """Servo id -> goal ticks for ``ServoBus.sync_write_goals`` from joint positions in joint order."""
        if len(values) != len(self.ids):
            raise ValueError(f"{len(values)} positions for {len(self.ids)} joints")
        return {motor_id: self.to_ticks(index, value) for index, (motor_id, value) in enumerate(zip(self.ids, values))}
