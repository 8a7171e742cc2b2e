from __future__ import annotations

from pathlib import Path

import pytest
from support.model_dirs import published_model
from support.so101_calibration import SO101_CALIBRATION, calibration, write_calibration

from vla_edge.bus.semantics import deep_merge
from vla_edge.cli import main
from vla_edge.components.actuator.config import ActuatorConfig
from vla_edge.components.actuator.units import JointUnits
from vla_edge.components.base import load_config
from vla_edge.components.model_updater.component import ModelUpdaterComponent
from vla_edge.components.model_updater.config import ModelUpdaterConfig
from vla_edge.core.server import LocalCore
from vla_edge.errors import ConfigurationError
from vla_edge.up import (
    COMPONENTS,
    UpOptions,
    build_overrides,
    camera_source,
    find_recipes_dir,
)

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
    # no manifest in the directory: the updater adopts what the inference component serves
    assert overrides["com.vlaedge.ModelUpdater"] == {"model": {"source": "image"}}


def test_defaults_override_only_the_serial_port_and_frame_dir() -> None:
    assert build_overrides(UpOptions(), "/dev/pts/9", Path("/dev/shm/x")) == {
        "com.vlaedge.Actuator": {"serialPort": "/dev/pts/9"},
        "com.vlaedge.Camera": {"frameDir": "/dev/shm/x"},
        "com.vlaedge.Inference": {"frameDir": "/dev/shm/x"},
    }


# --- the model store and the model both components start with -------------------------------------


def test_updater_gets_the_run_store_and_a_published_policy_as_its_model(tmp_path: Path) -> None:
    published_model(tmp_path / "v1", name="pick", version="1")
    overrides = build_overrides(UpOptions(policy=str(tmp_path / "v1")), "/dev/pts/9", tmp_path / "frames",
                                tmp_path / "run" / "store")
    assert overrides["com.vlaedge.ModelUpdater"] == {
        "storeDir": str(tmp_path / "run" / "store"),
        "model": {"source": "local", "path": str(tmp_path / "v1")},
    }
    assert overrides["com.vlaedge.Inference"]["policyPath"] == str(tmp_path / "v1")


def test_a_model_named_in_the_config_file_replaces_the_policy_flags(tmp_path: Path) -> None:
    """``--config`` giving the updater ``modelPath`` must not leave it with two models (a rejected configuration)."""
    published_model(tmp_path / "v1", version="1")
    extra = tmp_path / "extra.yaml"
    extra.write_text(f"com.vlaedge.ModelUpdater:\n  modelPath: {tmp_path / 'other'}\n  probationS: 5\n")
    overrides = build_overrides(UpOptions(policy=str(tmp_path / "v1"), config=extra), "/dev/null", tmp_path)
    assert overrides["com.vlaedge.ModelUpdater"] == {"modelPath": str(tmp_path / "other"), "probationS": 5}


def test_the_core_serves_an_updater_configuration_a_model_deployment_can_change(tmp_path: Path) -> None:
    """What the updater starts with validates, and MERGEing a new ``model`` (vla-edge core deploy) is accepted."""
    published_model(tmp_path / "v1", version="1")
    overrides = build_overrides(UpOptions(policy=str(tmp_path / "v1")), "/dev/pts/9", tmp_path / "frames",
                                tmp_path / "run" / "store")
    recipes = [ROOT / "components" / c.recipe_dir / "recipe.yaml" for c in COMPONENTS]
    with LocalCore(tmp_path / "run", recipes, overrides) as core:
        served = core.configuration("com.vlaedge.ModelUpdater")
    config = load_config(ModelUpdaterConfig, served)
    assert config.store_root() == tmp_path / "run" / "store"
    assert config.desired().source == "local" and config.desired().path == str(tmp_path / "v1")
    deployed = deep_merge(served, {"model": {"source": "local", "path": str(tmp_path / "v2")}})
    assert ModelUpdaterComponent.validate_configuration(deployed) is None


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
    help_text = capsys.readouterr().out
    assert "--duration" in help_text and "--calibration" in help_text
    assert "vla-edge model manifest" in help_text and "--update-config" in help_text
    assert main([]) == 2


# --- --calibration: the actuator starts with a LeRobot calibration inline ---------------------------


def test_calibration_goes_inline_into_the_actuator_the_core_serves(tmp_path: Path) -> None:
    """What the actuator reads from the local core at start validates and has the file's joint units."""
    calibration = write_calibration(tmp_path / "so101.json")
    overrides = build_overrides(UpOptions(calibration=calibration), "/dev/pts/9", tmp_path / "frames")
    assert overrides["com.vlaedge.Actuator"] == {
        "serialPort": "/dev/pts/9", "calibration": SO101_CALIBRATION, "calibrationFile": ""}  # fmt: skip
    recipes = [ROOT / "components" / c.recipe_dir / "recipe.yaml" for c in COMPONENTS]
    with LocalCore(tmp_path / "run", recipes, overrides) as core:
        served = core.configuration("com.vlaedge.Actuator")
    config = load_config(ActuatorConfig, served)
    assert config.calibration == SO101_CALIBRATION and config.serial_port == "/dev/pts/9"
    from_file = load_config(ActuatorConfig, {"calibrationFile": str(calibration)})
    ours, theirs = JointUnits.from_config(config), JointUnits.from_config(from_file)
    assert ours.modes == theirs.modes
    for index in range(len(ours.names)):
        assert [ours.to_units(index, ticks) for ticks in range(0, 4096, 97)] == [
            theirs.to_units(index, ticks) for ticks in range(0, 4096, 97)
        ]


def test_calibration_is_checked_against_the_joints_of_the_config_file(tmp_path: Path) -> None:
    extra = tmp_path / "extra.yaml"
    extra.write_text(
        "com.vlaedge.Actuator:\n  joints:\n    - {name: shoulder_pan, id: 1, minDeg: -90, maxDeg: 90}\n"
    )
    calibration = write_calibration(tmp_path / "so101.json")
    overrides = build_overrides(UpOptions(calibration=calibration, config=extra), "/dev/null", tmp_path)
    assert list(overrides["com.vlaedge.Actuator"]["calibration"]) == ["shoulder_pan"]
    extra.write_text("com.vlaedge.Actuator:\n  calibrationFile: /some/where.json\n")
    with pytest.raises(ConfigurationError, match="keep one"):
        build_overrides(UpOptions(calibration=calibration, config=extra), "/dev/null", tmp_path)


def test_bad_calibration_exits_2_before_anything_starts(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    bad = write_calibration(tmp_path / "bad.json", calibration(shoulder_pan={"id": 4}))
    assert main(["up", "--calibration", str(bad), "--run-dir", str(tmp_path / "run")]) == 2
    assert "--calibration: calibration file" in caplog.text and "other servo ids" in caplog.text
    assert main(["up", "--calibration", str(tmp_path / "missing.json"), "--run-dir", str(tmp_path / "run")]) == 2
    assert "missing.json does not exist" in caplog.text
    assert not (tmp_path / "run").exists()  # no core, no emulator, no run directory
