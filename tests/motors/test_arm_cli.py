"""``vla-edge arm``: status, torque-off and pose against the STS3215 emulator on a real pty."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest

from vla_edge.cli import main as vla_edge_main
from vla_edge.components.actuator.units import degrees_to_ticks, ticks_to_degrees
from vla_edge.motors.feetech import tables as t
from vla_edge.motors.feetech.arm_cli import main
from vla_edge.motors.feetech.emulator import ArmEmulator

NAMES = ("shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper")
MAX_STEP = 4.0


def write_config(path: Path, control_hz: float = 100.0) -> Path:
    config = {
        "packetTimeoutMs": 500.0,  # the emulator shares a noisy machine; a real bus uses 50 ms
        "maxStepDeg": MAX_STEP,
        "controlHz": control_hz,
        "maxActionLagS": max(0.05, 1.0 / control_hz),  # the actuator's rule: at least one tick
        "poses": {
            "reach": {"shoulder_pan": 60.0, "elbow_flex": -40.0, "wrist_roll": 170.0, "gripper": 90.0},
        },
    }
    path.write_text(json.dumps(config))
    return path


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    return write_config(tmp_path / "arm.json")


def test_status_shows_every_joint(emulator: ArmEmulator, config_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    emulator.set_position(3, 2048 + 512)  # +45°
    emulator.set_error_bits(5, t.ERR_OVERLOAD)
    assert main(["status", "--port", emulator.device_path, "--config", str(config_file)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:2] == ["joint", "id"]
    rows = {line.split()[0]: line for line in out[1:]}
    assert tuple(rows) == NAMES
    assert rows["elbow_flex"].split()[2] == "45.0"
    assert "overload" in rows["wrist_roll"]
    assert rows["shoulder_pan"].split()[4:6] == ["30", "12.0"]  # °C, V from the emulator's table
    assert rows["shoulder_pan"].rstrip().endswith("none")


def test_status_json_through_the_top_level_command(
    emulator: ArmEmulator, config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert vla_edge_main(["arm", "status", "--port", emulator.device_path, "--config", str(config_file), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == list(NAMES)
    assert [r["id"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert all(r["position_deg"] == 0.0 and r["errors"] == "none" and not r["torque"] for r in rows)


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
    started = time.monotonic()
    assert main(["pose", "reach", "--port", emulator.device_path, "--config", str(config_file)]) == 0
    elapsed = time.monotonic() - started
    expected = {1: 60.0, 2: ticks_to_degrees(2048 - 300), 3: -40.0, 4: 0.0, 5: 160.0, 6: 90.0}  # wrist_roll limit 160
    goals = emulator.goal_positions()
    for servo, degrees in expected.items():
        assert goals[servo] == degrees_to_ticks(degrees), servo
    assert all(emulator.torque_enabled().values())  # holds the pose
    writes = emulator.goal_writes()
    per_servo: dict[int, list[int]] = defaultdict(list)
    for _, servo, ticks in writes:
        per_servo[servo].append(ticks)
    worst = 0.0
    for servo, sequence in per_servo.items():
        assert sequence[0] == before[servo]
        previous = before[servo]
        for ticks in sequence:
            step = abs(ticks_to_degrees(ticks) - ticks_to_degrees(previous))
            worst = max(worst, step)
            previous = ticks
    assert worst <= MAX_STEP + 1e-9
    assert worst > MAX_STEP - 0.1  # it did move at full speed
    assert len(per_servo[5]) >= 160 / MAX_STEP  # 40 steps at 100 Hz: at least 0.39 s
    assert elapsed >= 0.35


def test_unknown_pose_is_refused_before_touching_the_bus(
    emulator: ArmEmulator, config_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert main(["pose", "wave", "--port", emulator.device_path, "--config", str(config_file)]) == 2
    assert "known poses: reach, rest, zero" in caplog.text
    assert emulator.goal_writes() == []


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
