"""Configuration of the actuator component (recipe ``DefaultConfiguration`` keys, camelCase).

Joint units (:mod:`.units`): with ``calibrationFile`` empty (the default) a joint position is
in degrees of its raw encoder reading, 2048 ticks = 0° and 4096 ticks per turn. With a LeRobot
calibration file, positions are in LeRobot's units for the same arm (:mod:`.calibration`):
``normMode`` ``degrees`` (0° at the middle of the calibrated range, LeRobot's ``use_degrees``)
or ``range_m100_100``, and the joint named ``gripper`` always ``range_0_100`` (as LeRobot's
SO-101). The joint limits ``minDeg``/``maxDeg`` and ``maxStepDeg`` are in these configured
units despite their names: with ``range_m100_100`` they are percentages of the calibrated
range (-100..100; the gripper's 0..100).

How overlapping chunks combine (``chunkMerge``, ``mergeDecay``, ``mergeMaxChunks``,
``crossfadeS``) is defined in :mod:`.merge`; when actions and chunks are too old or too
far ahead (``maxActionLagS``, ``maxLeadS``) in :mod:`.schedule`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from pydantic import Field, StrictInt, field_validator, model_validator

from vla_edge.components.actuator.calibration import (
    MotorCalibration,
    load_calibration,
    parse_calibration,
)
from vla_edge.components.actuator.merge import MergeName
from vla_edge.components.base import ConfigModel
from vla_edge.errors import ConfigurationError

SUPPORTED_BAUDRATES = (1_000_000, 500_000, 250_000, 128_000, 115_200, 57_600, 38_400, 19_200)


BodyNormMode = Literal["degrees", "range_m100_100"]


class JointConfig(ConfigModel):
    """One joint: its name in action chunks, its servo id on the bus and its allowed range.

    ``minDeg``/``maxDeg`` are in the configured joint units (degrees unless ``normMode`` is
    ``range_m100_100`` with a calibration file; the gripper's are 0..100 with a calibration file).
    """

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    id: int = Field(ge=0, le=252)
    min_deg: float = Field(ge=-180.0, le=180.0, allow_inf_nan=False)
    max_deg: float = Field(ge=-180.0, le=180.0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _range(self) -> JointConfig:
        if self.min_deg >= self.max_deg:
            raise ValueError(f"joint {self.name!r}: minDeg {self.min_deg} must be below maxDeg {self.max_deg}")
        return self


def so101_joints() -> list[JointConfig]:
    """SO-100/SO-101 follower: servos 1..6, conservative ranges around the mid position."""
    return [
        JointConfig(name="shoulder_pan", id=1, min_deg=-110.0, max_deg=110.0),
        JointConfig(name="shoulder_lift", id=2, min_deg=-100.0, max_deg=100.0),
        JointConfig(name="elbow_flex", id=3, min_deg=-100.0, max_deg=100.0),
        JointConfig(name="wrist_flex", id=4, min_deg=-100.0, max_deg=100.0),
        JointConfig(name="wrist_roll", id=5, min_deg=-160.0, max_deg=160.0),
        JointConfig(name="gripper", id=6, min_deg=-10.0, max_deg=100.0),
    ]


class ActuatorConfig(ConfigModel):
    serial_port: str = Field(default="/dev/ttyACM0", min_length=1)
    """Serial device of the arm's servo bus adapter (the user needs the ``dialout`` group)."""
    baudrate: int = 1_000_000
    joints: list[JointConfig] = Field(default_factory=so101_joints, min_length=1, max_length=32)
    max_step_deg: float = Field(default=5.0, gt=0.0, le=90.0, allow_inf_nan=False)
    """Largest change of any joint's goal in one control tick (5° at 30 Hz = 150°/s)."""
    control_hz: float = Field(default=30.0, ge=1.0, le=200.0, allow_inf_nan=False)
    tick_phase_s: float = Field(default=0.004, ge=0.0, le=0.5, allow_inf_nan=False)
    """Ticks run on the wall-clock grid of ``1/controlHz`` (the grid the inference component puts
    actions on), this long after each grid point: a tick then finds exactly one action due and can
    wake up to one tick minus this late without taking the next tick's action. Less than one tick."""
    hold_after_s: float = Field(default=0.5, gt=0.0, le=60.0, allow_inf_nan=False)
    """Watchdog: with no fresh action for this long the arm holds its position."""
    torque_off_after_s: float = Field(default=10.0, gt=0.0, le=3600.0, allow_inf_nan=False)
    """Watchdog: with no fresh action for this long torque is switched off (the arm goes limp)."""
    stop_settle_s: float = Field(default=0.5, ge=0.0, le=10.0, allow_inf_nan=False)
    """On stop the arm holds where it is, re-holding until it no longer moves, for at most this long."""
    torque_off_on_stop: bool = True
    """Turn torque off once the arm has settled on stop. False keeps the servos holding (an arm
    that would fall when limp); the servos then hold until they lose power."""
    packet_timeout_ms: float = Field(default=50.0, ge=5.0, le=1000.0, allow_inf_nan=False)
    reconnect_interval_s: float = Field(default=1.0, gt=0.0, le=60.0, allow_inf_nan=False)
    """After the servo port is lost, the first reopen attempt waits this long; each failed attempt
    doubles the wait up to ``reconnectMaxIntervalS``."""
    reconnect_max_interval_s: float = Field(default=10.0, gt=0.0, le=600.0, allow_inf_nan=False)
    """Longest wait between two attempts to reopen a lost servo port."""
    bus_retries: int = Field(default=2, ge=0, le=10)
    """A servo transaction that fails (no status packet, bad checksum) is retried up to this many
    times, but only while the retry still fits in the control tick."""
    fault_stop_after: int = Field(default=3, ge=1, le=1000)
    """Consecutive control ticks that fail (a bus error left after retries, or a servo reporting
    overheat, overload, overcurrent, input voltage or angle sensor) before goal writes stop and torque goes off.
    Torque returns with the next fresh action once the bus answers cleanly again."""
    telemetry_hz: float = Field(default=2.0, ge=0.0, le=100.0, allow_inf_nan=False)
    """How often velocity, load, current, temperature, voltage and the error bits are read (one
    extra sync read over the present-state registers); 0 turns it off. At most ``controlHz``."""
    interpolate: bool = False
    """With ``controlHz`` above the policy's action rate, ticks between two planned actions move
    the goal along the straight line between them instead of keeping the last one (steps)."""
    chunk_merge: MergeName = "latest"
    """How a new chunk combines with queued ones where they overlap: ``latest`` (the new chunk
    replaces the old actions for the times it covers), ``average`` (weighted average, newest
    weighs most, see ``mergeDecay``) or ``crossfade`` (linear blend over ``crossfadeS``)."""
    merge_decay: float = Field(default=0.5, ge=0.0, le=20.0, allow_inf_nan=False)
    """``average``: a chunk's weight is ``exp(-mergeDecay * rank)``, rank 0 for the newest chunk
    covering the time, 1 for the next older one... 0.5 gives 1, 0.61, 0.37, ...; 0 is a plain mean."""
    merge_max_chunks: int = Field(default=8, ge=1, le=64)
    """``average``/``crossfade``: how many of the newest chunks are remembered for merging."""
    crossfade_s: float = Field(default=0.2, gt=0.0, le=10.0, allow_inf_nan=False)
    """``crossfade``: how long the blend from the queued plan to a new chunk lasts (shortened to
    the overlap when the queued plan ends sooner)."""
    max_action_lag_s: float = Field(default=0.05, gt=0.0, le=1.0, allow_inf_nan=False)
    """An action more than this late at its tick is dropped (``actions_dropped.stale``), and a
    chunk whose last action is already this late on arrival is dropped whole
    (``chunks_dropped.stale``). At least one control tick."""
    max_lead_s: float = Field(default=5.0, gt=0.0, le=60.0, allow_inf_nan=False)
    """A chunk whose ``tStart`` is more than this ahead of the actuator's clock is rejected
    (``chunks_dropped.far_future``): the clocks of inference and actuator disagree."""
    calibration: dict[str, dict[str, StrictInt]] = Field(default_factory=dict)
    """This arm's LeRobot calibration inline, as ``lerobot-calibrate`` writes it (motor name ->
    ``id``, ``drive_mode``, ``homing_offset``, ``range_min``, ``range_max``): the form a deployment
    carries to a fleet (``vla-edge arm calibration`` produces the configuration update). Empty: none.
    Exclusive with ``calibrationFile``; positions are then in LeRobot's units as with a file."""
    calibration_file: str = ""
    """LeRobot calibration JSON of this arm (``lerobot-calibrate`` output, motors named as the
    joints, same servo ids). Empty: uncalibrated degrees, 2048 ticks = 0°. When set, joint
    positions, limits and ``maxStepDeg`` are in LeRobot's units (``normMode``)."""
    norm_mode: BodyNormMode = "degrees"
    """With ``calibrationFile``: the body joints' units, ``degrees`` (LeRobot SO-101
    ``use_degrees=True``) or ``range_m100_100``. The ``gripper`` joint is always ``range_0_100``."""

    @field_validator("baudrate")
    @classmethod
    def _baudrate(cls, value: int) -> int:
        if value not in SUPPORTED_BAUDRATES:
            raise ValueError(f"baudrate {value} is not supported by STS3215 servos; use one of {SUPPORTED_BAUDRATES}")
        return value

    @field_validator("joints")
    @classmethod
    def _unique(cls, joints: list[JointConfig]) -> list[JointConfig]:
        for attribute in ("name", "id"):
            values = [getattr(joint, attribute) for joint in joints]
            duplicates = sorted({v for v in values if values.count(v) > 1})
            if duplicates:
                raise ValueError(f"joint {attribute}s must be unique; duplicated: {duplicates}")
        return joints

    @model_validator(mode="after")
    def _watchdog_order(self) -> ActuatorConfig:
        if self.torque_off_after_s <= self.hold_after_s:
            raise ValueError(
                f"torqueOffAfterS ({self.torque_off_after_s}) must be longer than holdAfterS ({self.hold_after_s})"
            )
        return self

    @model_validator(mode="after")
    def _phase_inside_a_tick(self) -> ActuatorConfig:
        if self.tick_phase_s >= self.tick_s:
            raise ValueError(f"tickPhaseS ({self.tick_phase_s}) must be shorter than one control tick ({self.tick_s:.4f} s)")
        return self

    @model_validator(mode="after")
    def _lag_covers_a_tick(self) -> ActuatorConfig:
        if self.max_action_lag_s < self.tick_s:
            raise ValueError(
                f"maxActionLagS ({self.max_action_lag_s}) must be at least one control tick "
                f"({self.tick_s:.4f} s at controlHz {self.control_hz}), or every other action would be dropped"
            )
        return self

    @model_validator(mode="after")
    def _calibration_usable(self) -> ActuatorConfig:
        if self.calibration and self.calibration_file:
            raise ValueError("set calibration (inline) or calibrationFile, not both")
        key = "calibration" if self.calibration else "calibrationFile"
        try:
            self.joint_calibration()
        except ConfigurationError as exc:
            raise ValueError(f"{key}: {exc}") from exc
        return self

    @model_validator(mode="after")
    def _rates(self) -> ActuatorConfig:
        if self.telemetry_hz > self.control_hz:
            raise ValueError(f"telemetryHz ({self.telemetry_hz}) must not exceed controlHz ({self.control_hz})")
        if self.reconnect_max_interval_s < self.reconnect_interval_s:
            raise ValueError(
                f"reconnectMaxIntervalS ({self.reconnect_max_interval_s}) must be at least "
                f"reconnectIntervalS ({self.reconnect_interval_s})"
            )
        return self

    def joint_calibration(self) -> dict[str, MotorCalibration] | None:
        """The arm's LeRobot calibration (inline or from ``calibrationFile``), checked against the
        joints' names and ids; ``None`` when uncalibrated. Raises ConfigurationError."""
        if self.calibration:
            calibration = parse_calibration(self.calibration, "calibration")
            missing = [name for name in self.names if name not in calibration]
            if missing:
                raise ConfigurationError(f"no calibration for joints {missing}; it has {sorted(calibration)}")
        elif self.calibration_file:
            calibration = load_calibration(self.calibration_file, self.names)
        else:
            return None
        check_calibration_ids(self, calibration)
        return calibration

    @property
    def names(self) -> list[str]:
        return [joint.name for joint in self.joints]

    @property
    def motor_ids(self) -> tuple[int, ...]:
        return tuple(joint.id for joint in self.joints)

    @property
    def tick_s(self) -> float:
        return 1.0 / self.control_hz


def check_calibration_ids(config: ActuatorConfig, calibration: Mapping[str, MotorCalibration]) -> None:
    """Each joint's servo id must be the one its calibration was made for."""
    source = f"calibration file {config.calibration_file!r}" if config.calibration_file else "the calibration"
    wrong = [
        f"{joint.name} (id {joint.id}, calibrated as id {calibration[joint.name].id})"
        for joint in config.joints
        if calibration[joint.name].id != joint.id
    ]
    if wrong:
        raise ConfigurationError(
            f"{source} was made for other servo ids: {', '.join(wrong)}"
        )
