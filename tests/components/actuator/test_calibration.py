"""LeRobot calibration files and joint normalisation: identical to LeRobot's own code."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support import wait_for
from support.actuator import NAMES, chunk

from vla_edge.components.actuator.calibration import (
    NORM_MODES,
    MotorCalibration,
    calibration_to_json,
    load_calibration,
    normalize,
    unnormalize,
)
from vla_edge.components.actuator.config import ActuatorConfig
from vla_edge.components.actuator.units import JointUnits, degrees_to_ticks, ticks_to_degrees
from vla_edge.components.base import load_config
from vla_edge.errors import ConfigurationError

lerobot_motors = pytest.importorskip("lerobot.motors")
feetech = pytest.importorskip("lerobot.motors.feetech")
draccus = pytest.importorskip("draccus")

# A real-looking SO-101 calibration: motor 2 and the gripper inverted (drive_mode 1).
SO101 = {
    "shoulder_pan": {"id": 1, "drive_mode": 0, "homing_offset": -1370, "range_min": 758, "range_max": 3292},
    "shoulder_lift": {"id": 2, "drive_mode": 1, "homing_offset": 105, "range_min": 812, "range_max": 3250},
    "elbow_flex": {"id": 3, "drive_mode": 0, "homing_offset": 1020, "range_min": 863, "range_max": 3096},
    "wrist_flex": {"id": 4, "drive_mode": 0, "homing_offset": -1310, "range_min": 870, "range_max": 3227},
    "wrist_roll": {"id": 5, "drive_mode": 0, "homing_offset": 1120, "range_min": 0, "range_max": 4095},
    "gripper": {"id": 6, "drive_mode": 1, "homing_offset": 1291, "range_min": 2023, "range_max": 3521},
}

# Raw ticks across and beyond every range above (negative: sign-magnitude readings below 0).
SWEEP = [-300, -1, 0, 1, *range(2, 4096, 37), 4094, 4095, 4096, 4500]
VALUES = [-250.0, -180.0, -100.5, -100.0, -99.99, -45.3, -0.4, 0.0, 0.4, 12.345, 50.0, 99.99, 100.0, 100.5, 180.0, 250.0]


@pytest.fixture
def calibration_file(tmp_path: Path) -> Path:
    path = tmp_path / "so101_follower.json"
    path.write_text(json.dumps(SO101, indent=4))
    return path


def lerobot_bus(calibration: dict[str, MotorCalibration], mode: str):
    """LeRobot's own Feetech bus (never connected: no port is opened) for ``calibration``."""
    motors = {
        name: lerobot_motors.Motor(c.id, "sts3215", lerobot_motors.MotorNormMode(mode)) for name, c in calibration.items()
    }
    theirs = {
        name: lerobot_motors.MotorCalibration(c.id, c.drive_mode, c.homing_offset, c.range_min, c.range_max)
        for name, c in calibration.items()
    }
    return feetech.FeetechMotorsBus(port="not-opened", motors=motors, calibration=theirs)


def with_drive_mode(drive_mode: int) -> dict[str, MotorCalibration]:
    return {
        name: MotorCalibration(**{**fields, "drive_mode": drive_mode}) for name, fields in SO101.items()
    }


def test_loads_what_lerobot_loads(calibration_file: Path) -> None:
    ours = load_calibration(calibration_file, list(SO101))
    with open(calibration_file) as f, draccus.config_type("json"):
        theirs = draccus.load(dict[str, lerobot_motors.MotorCalibration], f)
    assert list(ours) == list(theirs)
    for name, calibration in ours.items():
        t = theirs[name]
        assert (calibration.id, calibration.drive_mode, calibration.homing_offset, calibration.range_min, calibration.range_max) == (
            t.id,
            t.drive_mode,
            t.homing_offset,
            t.range_min,
            t.range_max,
        )
    assert calibration_to_json(ours) == SO101


@pytest.mark.parametrize("mode", NORM_MODES)
@pytest.mark.parametrize("drive_mode", [0, 1])
def test_normalize_equals_lerobot(mode: str, drive_mode: int) -> None:
    calibration = with_drive_mode(drive_mode)
    bus = lerobot_bus(calibration, mode)
    for raw in SWEEP:
        theirs = bus._normalize({c.id: raw for c in calibration.values()})
        for c in calibration.values():
            assert normalize(raw, c, mode) == theirs[c.id], (mode, drive_mode, c, raw)


@pytest.mark.parametrize("mode", NORM_MODES)
@pytest.mark.parametrize("drive_mode", [0, 1])
def test_unnormalize_equals_lerobot(mode: str, drive_mode: int) -> None:
    calibration = with_drive_mode(drive_mode)
    bus = lerobot_bus(calibration, mode)
    values = VALUES + [v / 7 for v in range(-700, 701, 3)]
    for value in values:
        theirs = bus._unnormalize({c.id: value for c in calibration.values()})
        for c in calibration.values():
            ours = unnormalize(value, c, mode)
            assert type(ours) is int
            assert ours == theirs[c.id], (mode, drive_mode, c, value)


@pytest.mark.parametrize("mode", NORM_MODES)
@pytest.mark.parametrize("drive_mode", [0, 1])
def test_round_trip_within_one_tick(mode: str, drive_mode: int) -> None:
    for c in with_drive_mode(drive_mode).values():
        for raw in SWEEP:
            expected = raw if mode == "degrees" else min(c.range_max, max(c.range_min, raw))
            assert abs(unnormalize(normalize(raw, c, mode), c, mode) - expected) <= 1, (mode, c, raw)


def test_ends_of_the_range() -> None:
    c = MotorCalibration(id=1, drive_mode=0, homing_offset=0, range_min=1000, range_max=3000)
    assert normalize(1000, c, "range_m100_100") == -100.0
    assert normalize(3000, c, "range_m100_100") == 100.0
    assert normalize(2000, c, "range_0_100") == 50.0
    assert normalize(2000, c, "degrees") == 0.0
    assert normalize(5000, c, "range_0_100") == 100.0  # clamped to the range
    inverted = MotorCalibration(id=1, drive_mode=1, homing_offset=0, range_min=1000, range_max=3000)
    assert normalize(1000, inverted, "range_0_100") == 100.0
    assert normalize(1000, inverted, "range_m100_100") == 100.0
    assert normalize(1000, inverted, "degrees") == normalize(1000, c, "degrees")  # no inversion in degrees
    assert unnormalize(150.0, c, "range_m100_100") == 3000
    with pytest.raises(ValueError, match="mode"):
        normalize(1000, c, "radians")  # type: ignore[arg-type]


# --- error cases -------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="does not exist"):
        load_calibration(tmp_path / "nope.json")


def test_bad_json(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text("{not json")
    with pytest.raises(ConfigurationError, match="not valid JSON"):
        load_calibration(path)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "non-empty object"),
        ({}, "non-empty object"),
        ({"gripper": 3}, "must be an object"),
        ({"gripper": {k: v for k, v in SO101["gripper"].items() if k != "range_max"}}, "lacks range_max"),
        ({"gripper": {**SO101["gripper"], "range_min": "10"}}, "range_min must be an integer"),
        ({"gripper": {**SO101["gripper"], "range_min": 10.5}}, "range_min must be an integer"),
        ({"gripper": {**SO101["gripper"], "drive_mode": 2}}, "drive_mode must be 0 or 1"),
        ({"gripper": {**SO101["gripper"], "range_min": 3521}}, "range_min .* must be below range_max"),
        ({"gripper": {**SO101["gripper"], "range_min": 4000}}, "range_min .* must be below range_max"),
    ],
)
def test_bad_content(tmp_path: Path, data: object, message: str) -> None:
    path = tmp_path / "cal.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigurationError, match=message):
        load_calibration(path)


def test_missing_motors(tmp_path: Path) -> None:
    path = tmp_path / "cal.json"
    path.write_text(json.dumps({"gripper": SO101["gripper"]}))
    with pytest.raises(ConfigurationError, match="no calibration for motors"):
        load_calibration(path, list(SO101))


# --- configuration and joint units ----------------------------------------------------------


def test_default_units_are_uncalibrated_degrees() -> None:
    config = ActuatorConfig()
    assert (config.calibration_file, config.norm_mode) == ("", "degrees")
    units = JointUnits.from_config(config)
    assert not units.calibrated
    ticks = {i: 2048 + 100 * i for i in config.motor_ids}
    assert units.positions(ticks) == [ticks_to_degrees(ticks[i]) for i in config.motor_ids]
    assert units.goals([10.0, -20.0, 0.0, 5.5, 170.0, -181.0]) == {
        1: degrees_to_ticks(10.0),
        2: degrees_to_ticks(-20.0),
        3: 2048,
        4: degrees_to_ticks(5.5),
        5: degrees_to_ticks(170.0),
        6: degrees_to_ticks(-181.0),
    }


@pytest.mark.parametrize("norm_mode", ["degrees", "range_m100_100"])
def test_calibrated_units_are_lerobot_so101(calibration_file: Path, norm_mode: str) -> None:
    config = load_config(ActuatorConfig, {"calibrationFile": str(calibration_file), "normMode": norm_mode})
    units = JointUnits.from_config(config)
    assert units.modes == (norm_mode,) * 5 + ("range_0_100",)
    # LeRobot's SO-101 follower: body joints in norm_mode, gripper in range_0_100.
    calibration = load_calibration(calibration_file)
    body = lerobot_bus({n: c for n, c in calibration.items() if n != "gripper"}, norm_mode)
    gripper = lerobot_bus({"gripper": calibration["gripper"]}, "range_0_100")
    for raw in SWEEP:
        ticks = dict.fromkeys(config.motor_ids, raw)
        theirs = {**body._normalize({i: raw for i in range(1, 6)}), **gripper._normalize({6: raw})}
        assert units.positions(ticks) == [theirs[i] for i in config.motor_ids]
    goals = [-30.0, 12.5, 80.0, -99.0, 0.0, 42.0]
    theirs = {
        **body._unnormalize(dict(zip(range(1, 6), goals[:5]))),
        **gripper._unnormalize({6: goals[5]}),
    }
    assert units.goals(goals) == theirs


def test_config_rejects_an_unusable_calibration_file(tmp_path: Path, calibration_file: Path) -> None:
    with pytest.raises(ConfigurationError, match="calibrationFile.*does not exist"):
        load_config(ActuatorConfig, {"calibrationFile": str(tmp_path / "missing.json")})
    with pytest.raises(ConfigurationError, match="normMode"):
        load_config(ActuatorConfig, {"calibrationFile": str(calibration_file), "normMode": "range_0_100"})
    partial = tmp_path / "partial.json"
    partial.write_text(json.dumps({n: c for n, c in SO101.items() if n != "wrist_roll"}))
    with pytest.raises(ConfigurationError, match="wrist_roll"):
        load_config(ActuatorConfig, {"calibrationFile": str(partial)})
    swapped = tmp_path / "swapped.json"
    swapped.write_text(json.dumps({**SO101, "gripper": {**SO101["gripper"], "id": 9}}))
    with pytest.raises(ConfigurationError, match="other servo ids"):
        load_config(ActuatorConfig, {"calibrationFile": str(swapped)})


def test_actuator_drives_the_servos_in_lerobot_units(make_actuator, emulator, calibration_file: Path) -> None:
    """A policy trained with LeRobot (range -100..100, gripper 0..100) commands the same servo ticks here."""
    harness = make_actuator(calibrationFile=str(calibration_file), normMode="range_m100_100")
    harness.wait_ticks(2)
    calibration = load_calibration(calibration_file)
    target = [0.0, 0.0, 0.0, 0.0, 0.0, 50.0]
    harness.publish(chunk([target] * 90))
    expected = {
        calibration[name].id: unnormalize(value, calibration[name], "range_0_100" if name == "gripper" else "range_m100_100")
        for name, value in zip(NAMES, target)
    }
    wait_for(lambda: emulator.goal_positions() == expected, timeout=20)
