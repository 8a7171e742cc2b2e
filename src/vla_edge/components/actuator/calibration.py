"""LeRobot calibration files and LeRobot's joint normalisation, without LeRobot.

A LeRobot calibration file (``lerobot-calibrate`` writes it, e.g.
``~/.cache/huggingface/lerobot/calibration/robots/so101_follower/<id>.json``) maps each
motor name to::

    {"id": 1, "drive_mode": 0, "homing_offset": -1370, "range_min": 758, "range_max": 3292}

:func:`normalize` and :func:`unnormalize` are LeRobot's ``MotorsBus._normalize`` /
``_unnormalize`` for one Feetech STS3215 motor (resolution 4096, ``apply_drive_mode``
true), value for value (a test compares them with LeRobot's own implementation):

``range_m100_100``
    the raw reading clamped to ``[range_min, range_max]`` and mapped linearly to
    -100..100 (negated when ``drive_mode`` is 1).
``range_0_100``
    the same mapped to 0..100 (``100 - x`` when ``drive_mode`` is 1). SO-101 grippers.
``degrees``
    ``(raw - mid) * 360 / 4095`` with ``mid = (range_min + range_max) / 2``: not clamped,
    ``drive_mode`` ignored.

Back to ticks, values are clamped to -100..100 / 0..100 (not in ``degrees``), then
truncated toward zero with ``int()`` as LeRobot does, so a round trip can lose up to
one tick.

The homing offset is not used here, as in LeRobot: ``lerobot-calibrate`` writes it into
the servo's ``Homing_Offset`` register and the servo itself reports
``Present_Position = actual - homing_offset`` (and offsets ``Goal_Position`` the same
way). Raw ticks here are therefore what the servo reports, sign-magnitude decoded, which
is what :meth:`vla_edge.motors.base.ServoBus.sync_read_positions` returns. The arm must
have been calibrated with LeRobot (the offsets and position limits are in the servos'
EEPROM) for the file's ranges to mean the same positions.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

from vla_edge.errors import ConfigurationError

NormMode = Literal["range_m100_100", "range_0_100", "degrees"]
NORM_MODES: tuple[str, ...] = get_args(NormMode)

RESOLUTION = 4096
"""Ticks per turn of an STS3215 (LeRobot's ``model_resolution_table["sts3215"]``)."""
MAX_RES = RESOLUTION - 1
"""LeRobot divides by ``resolution - 1`` in ``degrees`` mode; mirrored exactly."""

FIELDS = ("id", "drive_mode", "homing_offset", "range_min", "range_max")


@dataclass(frozen=True)
class MotorCalibration:
    """One motor's entry of a LeRobot calibration file (LeRobot's ``MotorCalibration``)."""

    id: int
    drive_mode: int
    homing_offset: int
    range_min: int
    range_max: int


def _check(name: str, entry: object, where: str) -> MotorCalibration:
    if not isinstance(entry, dict):
        raise ConfigurationError(f"{where}: motor {name!r} must be an object with {', '.join(FIELDS)}")
    missing = [field for field in FIELDS if field not in entry]
    if missing:
        raise ConfigurationError(f"{where}: motor {name!r} lacks {', '.join(missing)}")
    for field in FIELDS:
        value = entry[field]
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigurationError(f"{where}: motor {name!r}: {field} must be an integer, got {value!r}")
    calibration = MotorCalibration(**{field: entry[field] for field in FIELDS})
    if calibration.drive_mode not in (0, 1):
        raise ConfigurationError(f"{where}: motor {name!r}: drive_mode must be 0 or 1, got {calibration.drive_mode}")
    if calibration.range_min >= calibration.range_max:
        raise ConfigurationError(
            f"{where}: motor {name!r}: range_min ({calibration.range_min}) must be below "
            f"range_max ({calibration.range_max}); calibrate the arm again with lerobot-calibrate"
        )
    return calibration


def parse_calibration(data: object, where: str = "calibration") -> dict[str, MotorCalibration]:
    """Validate the decoded JSON of a LeRobot calibration file: motor name -> calibration."""
    if not isinstance(data, dict) or not data:
        raise ConfigurationError(f"{where}: must be a non-empty object of motor name -> calibration")
    return {str(name): _check(str(name), entry, where) for name, entry in data.items()}


def load_calibration(path: str | Path, motors: Iterable[str] | None = None) -> dict[str, MotorCalibration]:
    """Read a LeRobot calibration JSON file; ``motors``, when given, must all be in it.

    Every problem (missing or unreadable file, bad JSON, missing motors or fields, a
    non-integer field, ``range_min >= range_max``) is a :class:`ConfigurationError`.
    """
    path = Path(path).expanduser()
    where = f"calibration file {str(path)!r}"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigurationError(f"{where} does not exist; set calibrationFile to a LeRobot calibration JSON") from exc
    except OSError as exc:
        raise ConfigurationError(f"{where} cannot be read: {exc}") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigurationError(f"{where} is not valid JSON: {exc}") from exc
    calibration = parse_calibration(data, where)
    if motors is not None:
        missing = [name for name in motors if name not in calibration]
        if missing:
            raise ConfigurationError(f"{where} has no calibration for motors {missing}; it has {sorted(calibration)}")
    return calibration


def normalize(raw_ticks: int, calibration: MotorCalibration, mode: NormMode) -> float:
    """A raw position reading in ``mode`` units, exactly as LeRobot's ``_normalize``."""
    min_ = calibration.range_min
    max_ = calibration.range_max
    drive_mode = calibration.drive_mode
    if max_ == min_:
        raise ValueError(f"invalid calibration for motor {calibration.id}: min and max are equal")
    bounded = min(max_, max(min_, raw_ticks))
    if mode == "range_m100_100":
        norm = (((bounded - min_) / (max_ - min_)) * 200) - 100
        return -norm if drive_mode else norm
    if mode == "range_0_100":
        norm = ((bounded - min_) / (max_ - min_)) * 100
        return 100 - norm if drive_mode else norm
    if mode == "degrees":
        mid = (min_ + max_) / 2
        return (raw_ticks - mid) * 360 / MAX_RES
    raise ValueError(f"unknown normalisation mode {mode!r}; use one of {NORM_MODES}")


def unnormalize(value: float, calibration: MotorCalibration, mode: NormMode) -> int:
    """A ``mode`` value as raw goal ticks, exactly as LeRobot's ``_unnormalize``."""
    if not math.isfinite(value):
        raise ValueError(f"cannot convert {value!r} to ticks")
    min_ = calibration.range_min
    max_ = calibration.range_max
    drive_mode = calibration.drive_mode
    if max_ == min_:
        raise ValueError(f"invalid calibration for motor {calibration.id}: min and max are equal")
    if mode == "range_m100_100":
        value = -value if drive_mode else value
        bounded = min(100.0, max(-100.0, value))
        return int(((bounded + 100) / 200) * (max_ - min_) + min_)
    if mode == "range_0_100":
        value = 100 - value if drive_mode else value
        bounded = min(100.0, max(0.0, value))
        return int((bounded / 100) * (max_ - min_) + min_)
    if mode == "degrees":
        mid = (min_ + max_) / 2
        return int((value * MAX_RES / 360) + mid)
    raise ValueError(f"unknown normalisation mode {mode!r}; use one of {NORM_MODES}")


def calibration_to_json(calibration: Mapping[str, MotorCalibration]) -> dict[str, dict[str, int]]:
    """The JSON object LeRobot writes for ``calibration`` (for tests and tools)."""
    return {name: {field: getattr(c, field) for field in FIELDS} for name, c in calibration.items()}
