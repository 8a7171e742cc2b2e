"""The staging validator as the separate process it is: reports, exit codes, crashes and timeouts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from support.policy import ACT_ACTION_MEAN, ACT_CAMERAS, crash_validators_while_loading

from vla_edge.policies.validate import (
    EXIT_BAD_ARGUMENTS,
    EXIT_FAILED,
    EXIT_OK,
    BadArguments,
    load_recorded,
    validate_in_subprocess,
    validator_command,
)

FIVE = ["a", "b", "c", "d", "e"]


def write_recording(directory: Path, steps: int = 3) -> Path:
    """A recorded episode: states.json with names (in another order than FIVE) and one PNG per camera and step."""
    names = list(reversed(FIVE))
    states = [[float(step + index) for index in range(len(names))] for step in range(steps)]
    (directory / "states.json").parent.mkdir(parents=True, exist_ok=True)
    (directory / "states.json").write_text(json.dumps({"names": names, "states": states}))
    rng = np.random.default_rng(0)
    for camera in ACT_CAMERAS:
        (directory / camera).mkdir()
        for step in range(steps):
            assert cv2.imwrite(str(directory / camera / f"{step:03d}.png"), rng.integers(0, 256, (48, 64, 3), np.uint8))
    return directory


def test_act_model_passes_on_synthetic_and_recorded_observations(act_dir: Path, tmp_path: Path) -> None:
    recorded = write_recording(tmp_path / "episode")
    report = validate_in_subprocess(
        act_dir, list(ACT_CAMERAS), FIVE, smoke=3, recorded=recorded, latency_budget_ms=60_000.0,
        joint_limits={name: (-100.0, 100.0) for name in FIVE}, timeout_s=240,
    )
    assert report.ok, report
    assert (report.exit_code, report.reason, report.signal) == (EXIT_OK, None, None)
    assert report.policy_type == "act"
    assert report.smoke_inferences == 3 + 3  # the warm-up inference is not counted
    assert report.load_ms > 0 and report.warmup_ms > 0 and report.wall_ms > 0
    assert 0 < report.smoke_ms_p50 <= report.smoke_ms_max
    # the test ACT's action std is ~0: every action is its mean, so the range per joint is that mean
    assert report.action_min == pytest.approx(dict(zip(FIVE, ACT_ACTION_MEAN, strict=True)), abs=1e-3)
    assert report.action_max == pytest.approx(dict(zip(FIVE, ACT_ACTION_MEAN, strict=True)), abs=1e-3)
    assert report.peak_rss_mb > 0


def test_a_directory_that_is_no_model_fails_with_exit_1(tmp_path: Path) -> None:
    report = validate_in_subprocess(tmp_path, ["front"], FIVE, timeout_s=240)
    assert not report.ok and report.exit_code == EXIT_FAILED
    assert report.reason == "load_failed" and "missing config.json" in report.detail


def test_bad_arguments_exit_2_with_one_json_report_on_stdout(act_dir: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "vla_edge.policies.validate", str(act_dir), "--cameras", "top",
                           "--joints", "a", "--limits", "not json"], capture_output=True, text=True, timeout=120)
    assert done.returncode == EXIT_BAD_ARGUMENTS
    (line,) = done.stdout.splitlines()
    report = json.loads(line)
    assert report["ok"] is False and report["reason"] == "bad_arguments" and "--limits" in report["detail"]
    unknown = validate_in_subprocess(act_dir, list(ACT_CAMERAS), FIVE, joint_limits={"z": (0.0, 1.0)}, timeout_s=240)
    assert unknown.exit_code == EXIT_BAD_ARGUMENTS and "['z']" in unknown.detail


def test_validator_killed_by_a_signal_reports_the_signal_and_its_stderr(
    act_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    crash_validators_while_loading(tmp_path, monkeypatch)
    report = validate_in_subprocess(act_dir, list(ACT_CAMERAS), FIVE, timeout_s=240)
    assert not report.ok and report.reason == "validator_crashed"
    assert report.exit_code == -9 and report.signal == "SIGKILL"
    assert "killed by SIGKILL" in report.detail and "out-of-memory" in report.detail
    assert "validating" in report.stderr_tail  # what the validator said before it died


def test_validator_past_its_timeout_is_killed(act_dir: Path) -> None:
    report = validate_in_subprocess(act_dir, list(ACT_CAMERAS), FIVE, timeout_s=0.2)
    assert not report.ok and report.reason == "timeout"
    assert report.exit_code is not None and report.exit_code < 0  # killed, not exited
    assert "did not finish within 0.2 s" in report.detail


def test_malformed_recordings_are_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(BadArguments, match="states.json"):
        load_recorded(tmp_path, ["top"], FIVE)
    (tmp_path / "states.json").write_text(json.dumps([[0.0] * 4]))
    with pytest.raises(BadArguments, match="lists of 5 joint positions"):
        load_recorded(tmp_path, ["top"], FIVE)
    (tmp_path / "states.json").write_text(json.dumps([[0.0] * 5]))
    with pytest.raises(BadArguments, match="no images"):
        load_recorded(tmp_path, ["top"], FIVE)
    recorded = write_recording(tmp_path / "episode", steps=2)
    steps = load_recorded(recorded, list(ACT_CAMERAS), FIVE)
    assert len(steps) == 2 and steps[1][1] == [5.0, 4.0, 3.0, 2.0, 1.0]  # reordered from the recorded names
    assert steps[0][0]["top"].shape == (48, 64, 3)


def test_the_validator_yields_the_cpu_to_the_serving_process(act_dir: Path) -> None:
    command = validator_command(act_dir, ["top"], FIVE, task="-starts like an option")
    assert command[command.index("--nice") + 1] == "10"
    assert "--task=-starts like an option" in command
