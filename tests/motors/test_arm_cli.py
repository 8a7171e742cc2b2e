"""``vla-edge arm``: status, torque-off and pose against the STS3215 emulator on a real pty, in the
actuator's joint units (uncalibrated degrees, or LeRobot units with a calibration)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections import defaultdict
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from support.so101_calibration import SO101_CALIBRATION, write_calibration

from vla_edge.cli import main as vla_edge_main
from vla_edge.components.actuator.calibration import (
    MotorCalibration,
    NormMode,
    unnormalize,
)
from vla_edge.components.actuator.config import ActuatorConfig
from vla_edge.components.actuator.units import (
    JointUnits,
    degrees_to_ticks,
    ticks_to_degrees,
)
from vla_edge.components.base import load_config
from vla_edge.motors.feetech import tables as t
from vla_edge.motors.feetech.arm_cli import main
from vla_edge.motors.feetech.arm_pose import REST_POSE_DEG
from vla_edge.motors.feetech.emulator import ArmEmulator

NAMES = ("shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper")
MAX_STEP = 4.0


def write_config(path: Path, control_hz: float = 100.0, **keys: Any) -> Path:
    config = {
        "packetTimeoutMs": 500.0,  # the emulator shares a noisy machine; a real bus uses 50 ms
        "maxStepDeg": MAX_STEP,
        "controlHz": control_hz,
        "maxActionLagS": max(0.05, 1.0 / control_hz),  # the actuator's rule: at least one tick
        "poses": {
            "reach": {"shoulder_pan": 60.0, "elbow_flex": -40.0, "wrist_roll": 170.0, "gripper": 90.0},
        },
        **keys,
    }
    path.write_text(json.dumps(config))
    return path


def units_for(**keys: Any) -> JointUnits:
    """What the actuator computes for the same configuration keys."""
    return JointUnits.from_config(load_config(ActuatorConfig, keys))


def steps_per_servo(emulator: ArmEmulator) -> dict[int, list[int]]:
    per_servo: dict[int, list[int]] = defaultdict(list)
    for _, servo, ticks in emulator.goal_writes():
        per_servo[servo].append(ticks)
    return per_servo


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    return write_config(tmp_path / "arm.json")


def test_status_shows_every_joint(emulator: ArmEmulator, config_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    emulator.set_position(3, 2048 + 512)  # +45°
    emulator.set_error_bits(5, t.ERR_OVERLOAD)
    assert main(["status", "--port", emulator.device_path, "--config", str(config_file)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("units: uncalibrated degrees")
    assert out[1].split()[:5] == ["joint", "id", "position", "unit", "goal"]
    rows = {line.split()[0]: line.split() for line in out[2:]}
    assert tuple(rows) == NAMES
    assert rows["elbow_flex"][2:7] == ["45.0", "deg", "0.0", "2560", "2048"]  # units, then ticks
    assert "overload" in rows["wrist_roll"]
    assert rows["shoulder_pan"][7:9] == ["30", "12.0"]  # °C, V from the emulator's table
    assert rows["shoulder_pan"][-1] == "none"


def test_status_json_through_the_top_level_command(
    emulator: ArmEmulator, config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert vla_edge_main(["arm", "status", "--port", emulator.device_path, "--config", str(config_file), "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["calibrated"] is False and document["units"].startswith("units: uncalibrated degrees")
    rows = document["joints"]
    assert [r["name"] for r in rows] == list(NAMES)
    assert [r["id"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert all(r["position"] == 0.0 and r["position_ticks"] == 2048 and r["unit"] == "degrees" for r in rows)
    assert all(r["errors"] == "none" and not r["torque"] for r in rows)


@pytest.mark.parametrize("norm_mode", ["degrees", "range_m100_100"])
def test_status_in_lerobot_units_is_what_the_actuator_computes(
    emulator: ArmEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str], norm_mode: str
) -> None:
    ticks = {1: 700, 2: 1500, 3: 2600, 4: 3300, 5: 100, 6: 3000}  # servos 1 and 4 outside their calibrated range
    for servo, value in ticks.items():
        emulator.set_position(servo, value)
    config = write_config(tmp_path / "arm.json", calibration=SO101_CALIBRATION, normMode=norm_mode)
    assert main(["status", "--port", emulator.device_path, "--config", str(config), "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    units = units_for(calibration=SO101_CALIBRATION, normMode=norm_mode)
    assert document["calibrated"] is True and document["normMode"] == norm_mode
    assert "LeRobot inline calibration" in document["units"]
    for index, row in enumerate(document["joints"]):
        assert row["position_ticks"] == ticks[row["id"]]
        assert row["position"] == units.to_units(index, ticks[row["id"]])
        assert row["goal"] == units.to_units(index, 2048)
        assert row["unit"] == ("range_0_100" if row["name"] == "gripper" else norm_mode)


def test_status_with_a_calibration_file_flag(
    emulator: ArmEmulator, config_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    calibration = write_calibration(tmp_path / "so101.json")
    emulator.set_position(1, 3000)
    argv = ["status", "--port", emulator.device_path, "--config", str(config_file), "--calibration", str(calibration),
            "--norm-mode", "range_m100_100"]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"units: LeRobot calibration file {calibration}; body joints range_m100_100")
    units = units_for(calibrationFile=str(calibration), normMode="range_m100_100")
    pan = out[2].split()
    assert pan[:7] == ["shoulder_pan", "1", f"{units.to_units(0, 3000):.1f}", "±100", f"{units.to_units(0, 2048):.1f}",
                       "3000", "2048"]  # fmt: skip
    assert out[-1].split()[3] == "0..100"  # the gripper


def test_torque_off_turns_every_servo_off(
    emulator: ArmEmulator, config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["pose", "zero", "--port", emulator.device_path, "--config", str(config_file)]) == 0
    assert all(emulator.torque_enabled().values())
    capsys.readouterr()
    assert main(["torque-off", "--port", emulator.device_path, "--config", str(config_file)]) == 0
    assert not any(emulator.torque_enabled().values())
    assert "torque off on all 6 servos" in capsys.readouterr().out


def test_pose_moves_in_bounded_steps_to_the_clamped_pose(emulator: ArmEmulator, config_file: Path) -> None:
    emulator.set_position(2, 2048 - 300)  # shoulder_lift starts elsewhere (moved by hand) and must stay there
    before = emulator.present_positions()  # the first write holds the arm where it is
    assert main(["pose", "reach", "--port", emulator.device_path, "--config", str(config_file)]) == 0
    expected = {1: 60.0, 2: ticks_to_degrees(2048 - 300), 3: -40.0, 4: 0.0, 5: 160.0, 6: 90.0}  # wrist_roll limit 160
    goals = emulator.goal_positions()
    for servo, degrees in expected.items():
        assert goals[servo] == degrees_to_ticks(degrees), servo
    assert all(emulator.torque_enabled().values())  # holds the pose
    worst = 0.0
    per_servo = steps_per_servo(emulator)
    for servo, sequence in per_servo.items():
        assert sequence[0] == before[servo]
        previous = before[servo]
        for ticks in sequence:
            worst = max(worst, abs(ticks_to_degrees(ticks) - ticks_to_degrees(previous)))
            previous = ticks
    assert worst <= MAX_STEP + 1e-9
    assert worst > MAX_STEP - 0.1  # it did move at full speed
    assert len(per_servo[5]) >= 160 / MAX_STEP  # one write per control tick: 40 of them at least


def test_pose_in_range_units_lands_on_lerobots_ticks(
    emulator: ArmEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mode: NormMode = "range_m100_100"
    config = write_config(tmp_path / "arm.json", calibration=SO101_CALIBRATION, normMode=mode)
    wanted = {"shoulder_pan": 25.0, "elbow_flex": -40.0, "wrist_flex": 63.3, "gripper": 80.0}
    argv = ["pose", "--port", emulator.device_path, "--config", str(config)]
    argv += [f"--joint={name}={value}" for name, value in wanted.items()]
    assert main(argv) == 0
    goals = emulator.goal_positions()
    for index, name in enumerate(NAMES):
        entry = MotorCalibration(**SO101_CALIBRATION[name])
        joint_mode: NormMode = "range_0_100" if name == "gripper" else mode
        assert goals[index + 1] == (unnormalize(wanted[name], entry, joint_mode) if name in wanted else 2048), name
    units = units_for(calibration=SO101_CALIBRATION, normMode=mode)
    for servo, sequence in steps_per_servo(emulator).items():
        values = [units.to_units(servo - 1, ticks) for ticks in sequence]
        assert all(abs(b - a) <= MAX_STEP + 1e-9 for a, b in pairwise(values)), servo
    out = capsys.readouterr().out
    assert "body joints range_m100_100" in out and "at the given joint values" in out


def test_pose_brings_a_joint_outside_its_calibrated_range_back_gradually(emulator: ArmEmulator, tmp_path: Path) -> None:
    """Range units read a joint outside the calibrated range as on its edge; the goal must still not jump there."""
    config = write_config(tmp_path / "arm.json", calibration=SO101_CALIBRATION, normMode="range_m100_100")
    emulator.set_position(1, 200)  # 558 ticks below shoulder_pan's range_min
    assert main(["pose", "--joint", "shoulder_pan=-90", "--port", emulator.device_path, "--config", str(config)]) == 0
    cap = int(MAX_STEP * (3292 - 758) / 200)  # maxStepDeg in ticks for this joint: 50
    sequence = steps_per_servo(emulator)[1]
    assert sequence[0] == 200
    assert all(abs(b - a) <= cap for a, b in pairwise(sequence))
    assert len(sequence) > (758 - 200) // cap
    assert sequence[-1] == unnormalize(-90.0, MotorCalibration(**SO101_CALIBRATION["shoulder_pan"]), "range_m100_100")


def test_rest_pose_in_calibrated_degrees(emulator: ArmEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path / "arm.json", calibration=SO101_CALIBRATION, normMode="degrees", maxStepDeg=10.0)
    assert main(["pose", "rest", "--dry-run", "--port", emulator.device_path, "--config", str(config)]) == 0
    assert emulator.goal_writes() == []
    assert "dry run: nothing was written" in capsys.readouterr().out
    assert main(["pose", "rest", "--port", emulator.device_path, "--config", str(config)]) == 0
    goals = emulator.goal_positions()
    units = units_for(calibration=SO101_CALIBRATION, normMode="degrees")
    for index, name in enumerate(NAMES[:-1]):
        assert goals[index + 1] == units.to_ticks(index, REST_POSE_DEG[name]), name
    gripper = SO101_CALIBRATION["gripper"]
    assert abs(goals[6] - (gripper["range_min"] + gripper["range_max"]) / 2) <= 1  # 0° from the middle, in 0..100


def test_unknown_pose_is_refused_before_touching_the_bus(
    emulator: ArmEmulator, config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["pose", "wave", "--port", emulator.device_path, "--config", str(config_file)]) == 2
    assert capsys.readouterr().err == "vla-edge arm: unknown pose 'wave'; known poses: reach, rest, zero\n"
    assert emulator.goal_writes() == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--joint", "elbow=3"], "no joint 'elbow'; configured joints: shoulder_pan"),
        (["--joint", "shoulder_pan"], "write NAME=VALUE"),
        (["--joint", "shoulder_pan=abc"], "'abc' is not a number"),
        (["--joint", "shoulder_pan=nan"], "must be a finite number"),
        ([], "give a pose name"),
    ],
)
def test_bad_joint_values_are_refused_before_touching_the_bus(
    emulator: ArmEmulator, config_file: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert main(["pose", *args, "--port", emulator.device_path, "--config", str(config_file)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("vla-edge arm: ") and err.count("\n") == 1 and message in err
    assert emulator.goal_writes() == []


def test_missing_calibration_flag_file_is_one_line_and_exit_2(
    config_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["status", "--config", str(config_file), "--calibration", str(tmp_path / "nope.json")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nope.json" in err and "does not exist" in err


def test_sigterm_during_a_pose_holds_then_switches_torque_off(emulator: ArmEmulator, tmp_path: Path) -> None:
    config = write_config(tmp_path / "slow.json", control_hz=10.0)  # 4° per 0.1 s: 4 s for the reach pose
    process = subprocess.Popen(
        [sys.executable, "-m", "vla_edge.motors.feetech.arm_cli", "pose", "reach",
         "--port", emulator.device_path, "--config", str(config)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while len(emulator.goal_writes()) < 6 * 4 and time.monotonic() < deadline:  # hold + a few steps
            time.sleep(0.02)
        assert all(emulator.torque_enabled().values())
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, err
    assert "interrupted" in out
    assert not any(emulator.torque_enabled().values())
    snapshot = emulator.snapshot()
    assert abs(snapshot[1].goal_position - 2048) < degrees_to_ticks(60.0) - 2048  # stopped short of the pose
    assert snapshot[1].goal_position == emulator.goal_writes()[-1][2]
