"""What every ``vla-edge arm`` command shares: the actuator configuration, its joint units, the bus.

The commands load the same :class:`~vla_edge.components.actuator.config.ActuatorConfig`
the actuator component would (its defaults, or ``--config FILE`` with the actuator's keys)
and convert ticks with :meth:`JointUnits.from_config` of that configuration, so a position
printed or typed here means what the actuator and a LeRobot policy mean by it: uncalibrated
degrees (2048 ticks = 0°), or LeRobot's units when the configuration carries a calibration
(inline ``calibration``, ``calibrationFile``, or ``--calibration FILE`` here).
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, cast

from vla_edge.components.actuator.calibration import MotorCalibration, NormMode
from vla_edge.components.actuator.component import make_servo_bus
from vla_edge.components.actuator.config import ActuatorConfig
from vla_edge.components.actuator.units import TICKS_PER_TURN, JointUnits
from vla_edge.components.base import load_config
from vla_edge.errors import ConfigurationError
from vla_edge.motors.feetech.bus import FeetechBus

UNIT_LABELS: dict[str, str] = {"degrees": "deg", "range_m100_100": "±100", "range_0_100": "0..100"}
"""Short per-joint unit names for tables (``deg`` also for uncalibrated degrees)."""


class ArmCliError(Exception):
    """A problem the user can fix (bad pose, bad configuration or calibration file): exit code 2."""


@dataclass(frozen=True)
class ArmSetup:
    """One command's configuration: the validated actuator configuration and what came with it."""

    config: ActuatorConfig
    raw: dict[str, Any]
    """The actuator keys as given (``poses`` removed), for building variants such as an inline calibration."""
    poses: dict[str, dict[str, float]] = field(default_factory=dict)
    """Pose name -> {joint: value in the configured units} from the configuration file."""
    source: str = "the actuator's defaults"

    @cached_property
    def units(self) -> JointUnits:
        """The actuator's joint units for this configuration (the calibration was checked at load)."""
        return JointUnits.from_config(self.config)

    @cached_property
    def calibration(self) -> dict[str, MotorCalibration] | None:
        """The LeRobot calibration in force (inline or from the file), None when uncalibrated."""
        return self.config.joint_calibration()

    @cached_property
    def joint_modes(self) -> list[NormMode]:
        """Per joint, in joint order: ``degrees`` when uncalibrated, else its LeRobot mode."""
        units = self.units
        uncalibrated: NormMode = "degrees"
        return list(units.modes) if units.calibrated else [uncalibrated] * len(self.config.joints)

    def describe_units(self) -> str:
        """One line saying which units positions are in and where the calibration comes from."""
        config = self.config
        if config.calibration:
            origin = "inline calibration"
        elif config.calibration_file:
            origin = f"calibration file {config.calibration_file}"
        else:
            return "units: uncalibrated degrees (raw encoder, 2048 ticks = 0°, 4096 ticks per turn)"
        body = "degrees (0° mid-range)" if config.norm_mode == "degrees" else "range_m100_100 (-100..100 of the range)"
        return f"units: LeRobot {origin}; body joints {body}, gripper range_0_100 (0..100 of its range)"

    def ticks_per_unit(self) -> list[float]:
        """Encoder ticks per configured unit, per joint: how far one unit of ``maxStepDeg`` moves a servo."""
        calibration = self.calibration
        slopes = []
        for joint, mode in zip(self.config.joints, self.joint_modes, strict=True):
            if calibration is None:
                slopes.append(TICKS_PER_TURN / 360.0)
                continue
            span = calibration[joint.name].range_max - calibration[joint.name].range_min
            if mode == "degrees":
                slopes.append((TICKS_PER_TURN - 1) / 360.0)  # LeRobot divides by resolution - 1
            elif mode == "range_m100_100":
                slopes.append(span / 200.0)
            else:  # range_0_100
                slopes.append(span / 100.0)
        return slopes


def read_mapping(path: Path, what: str) -> dict[str, Any]:
    """A YAML/JSON file that must hold a mapping; every problem is one :class:`ArmCliError` line."""
    import yaml

    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))  # YAML is a superset of JSON
    except FileNotFoundError:
        raise ArmCliError(f"{what} {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ArmCliError(f"cannot read {what} {path}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ArmCliError(f"{what} {path} is not valid YAML/JSON: {' '.join(str(exc).split())}") from exc
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ArmCliError(f"{what} {path} must be a mapping of actuator keys")
    return dict(loaded)


def load_arm_setup(
    path: Path | None,
    port: str | None = None,
    calibration_file: Path | None = None,
    norm_mode: NormMode | None = None,
    *,
    without_calibration: bool = False,
) -> ArmSetup:
    """The actuator configuration (defaults or ``path``), with ``--port``, ``--calibration`` and
    ``--norm-mode`` applied, and the poses the file defines. Raises :class:`ArmCliError`.

    ``without_calibration`` drops the file's own calibration keys: a calibration being imported
    replaces them, so an old ``calibrationFile`` that no longer exists must not stand in the way."""
    raw = read_mapping(path, "configuration") if path is not None else {}
    if without_calibration:
        raw.pop("calibration", None)
        raw.pop("calibrationFile", None)
    poses = parse_poses(raw.pop("poses", None) or {}, path)
    if port is not None:
        raw["serialPort"] = port
    if calibration_file is not None:
        if not calibration_file.expanduser().is_file():
            raise ArmCliError(f"--calibration {calibration_file} does not exist or is not a file")
        raw.pop("calibration", None)  # --calibration replaces whatever calibration the file carries
        raw["calibrationFile"] = str(calibration_file)
    if norm_mode is not None:
        raw["normMode"] = norm_mode
    try:
        config = load_config(ActuatorConfig, raw)
    except ConfigurationError as exc:
        raise ArmCliError(str(exc)) from exc
    names = set(config.names)
    for pose, joints in poses.items():
        unknown = sorted(set(joints) - names)
        if unknown:
            raise ArmCliError(f"pose {pose!r} names joints {unknown} that are not configured ({sorted(names)})")
    source = str(path) if path is not None else "the actuator's defaults"
    return ArmSetup(config, raw, poses, source)


def parse_poses(raw: Any, path: Path | None) -> dict[str, dict[str, float]]:
    if not isinstance(raw, dict):
        raise ArmCliError(f"{path}: 'poses' must map pose names to {{joint: value}}")
    poses: dict[str, dict[str, float]] = {}
    for name, joints in raw.items():
        if not isinstance(joints, dict):
            raise ArmCliError(f"{path}: pose {name!r} must map joint names to values")
        pose: dict[str, float] = {}
        for joint, value in joints.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ArmCliError(f"{path}: pose {name!r} joint {joint!r} is {value!r}, not a finite number")
            pose[str(joint)] = float(value)
        poses[str(name)] = pose
    return poses


def say(text: str) -> None:
    """The command's answer to the person who ran it (stdout); diagnostics go through logging."""
    sys.stdout.write(text + "\n")


def make_bus(config: ActuatorConfig) -> FeetechBus:
    """The same servo bus the actuator component opens, from the same configuration."""
    return cast(FeetechBus, make_servo_bus(config))  # make_servo_bus builds a FeetechBus; the CLI reads its registers
