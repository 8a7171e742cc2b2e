from __future__ import annotations

from pathlib import Path

import pytest

from vla_edge.cli import main
from vla_edge.errors import ConfigurationError
from vla_edge.up import UpOptions, build_overrides, camera_source, find_recipes_dir

ROOT = Path(__file__).resolve().parents[1]


def test_overrides_point_components_at_the_given_devices_and_policy(tmp_path: Path) -> None:
    extra = tmp_path / "extra.yaml"
    extra.write_text("com.vlaedge.Actuator:\n  maxStepDeg: 2.0\ncom.vlaedge.Inference:\n  task: stack the blocks\n")
    options = UpOptions(camera="0", policy=str(tmp_path / "policy"), config=extra)
    frames = tmp_path / "frames"
    overrides = build_overrides(options, "/dev/ttyACM3", frames)
    assert overrides["com.vlaedge.Actuator"] == {"serialPort": "/dev/ttyACM3", "maxStepDeg": 2.0}
    assert overrides["com.vlaedge.Camera"] == {
        "frameDir": str(frames),
        "cameras": [{"name": "front", "source": "device", "device": 0}],
    }
    assert overrides["com.vlaedge.Inference"] == {
        "frameDir": str(frames),
        "policyPath": str(tmp_path / "policy"),
        "task": "stack the blocks",
    }
    assert overrides["com.vlaedge.ModelUpdater"] == {"modelPath": str(tmp_path / "policy")}


def test_defaults_override_only_the_serial_port_and_frame_dir() -> None:
    assert build_overrides(UpOptions(), "/dev/pts/9", Path("/dev/shm/x")) == {
        "com.vlaedge.Actuator": {"serialPort": "/dev/pts/9"},
        "com.vlaedge.Camera": {"frameDir": "/dev/shm/x"},
        "com.vlaedge.Inference": {"frameDir": "/dev/shm/x"},
    }


def test_camera_flag_picks_the_source_type(tmp_path: Path) -> None:
    assert camera_source("2") == {"source": "device", "device": 2}
    assert camera_source("/dev/video4") == {"source": "device", "device": "/dev/video4"}
    assert camera_source("rtsp://cam.local/stream") == {"source": "stream", "url": "rtsp://cam.local/stream"}
    assert camera_source(str(tmp_path)) == {"source": "images", "path": str(tmp_path)}
    assert camera_source(str(tmp_path / "clip.mp4")) == {"source": "file", "path": str(tmp_path / "clip.mp4")}


def test_bad_config_file_is_refused_with_its_name(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("- just a list\n")
    with pytest.raises(ConfigurationError, match="bad.yaml"):
        build_overrides(UpOptions(config=bad), "/dev/null", tmp_path)


def test_recipes_are_found_in_the_checkout_or_refused_clearly(tmp_path: Path) -> None:
    assert find_recipes_dir(ROOT / "components") == ROOT / "components"
    with pytest.raises(ConfigurationError, match="--recipes"):
        find_recipes_dir(tmp_path)


def test_cli_help_and_missing_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["up", "--help"])
    assert info.value.code == 0
    assert "--duration" in capsys.readouterr().out
    assert main([]) == 2
