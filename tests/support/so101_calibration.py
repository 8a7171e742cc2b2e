"""A LeRobot SO-101 follower calibration as ``lerobot-calibrate`` writes it, for the arm CLI and up tests."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

SO101_CALIBRATION: dict[str, dict[str, int]] = {
    "shoulder_pan": {"id": 1, "drive_mode": 0, "homing_offset": -1370, "range_min": 758, "range_max": 3292},
    "shoulder_lift": {"id": 2, "drive_mode": 0, "homing_offset": 912, "range_min": 812, "range_max": 3224},
    "elbow_flex": {"id": 3, "drive_mode": 1, "homing_offset": -540, "range_min": 868, "range_max": 3100},
    "wrist_flex": {"id": 4, "drive_mode": 0, "homing_offset": 77, "range_min": 830, "range_max": 3190},
    "wrist_roll": {"id": 5, "drive_mode": 0, "homing_offset": -1020, "range_min": 0, "range_max": 4095},
    "gripper": {"id": 6, "drive_mode": 0, "homing_offset": 1303, "range_min": 2010, "range_max": 3410},
}
"""Elbow inverted (drive_mode 1) so that sign handling is exercised; wrist_roll over the full turn as LeRobot does."""


def calibration(**changes: dict[str, Any] | None) -> dict[str, Any]:
    """A copy of :data:`SO101_CALIBRATION` with some motors' fields changed (``None`` removes a motor)."""
    data: dict[str, Any] = copy.deepcopy(SO101_CALIBRATION)
    for motor, fields in changes.items():
        if fields is None:
            del data[motor]
        else:
            data.setdefault(motor, {}).update(fields)
    return data


def write_calibration(path: Path, data: Any = None) -> Path:
    """Write ``data`` (default: the SO-101 calibration) as LeRobot does, 4-space indented JSON."""
    path.write_text(json.dumps(SO101_CALIBRATION if data is None else data, indent=4))
    return path
