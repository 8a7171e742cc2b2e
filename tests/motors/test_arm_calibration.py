"""``vla-edge arm calibration import``: a LeRobot calibration file as the actuator's inline calibration."""

from __future__ import annotations

import contextlib
import copy
import json
import shlex
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from support.ipc import short_run_dir
from support.so101_calibration import SO101_CALIBRATION, calibration, write_calibration

from vla_edge.bus.semantics import deep_merge
from vla_edge.cli import main as vla_edge_main
from vla_edge.components.actuator.config import ActuatorConfig
from vla_edge.components.actuator.units import JointUnits
from vla_edge.components.base import load_config
from vla_edge.core.recipes import load_recipe
from vla_edge.core.server import LocalCore
from vla_edge.motors.feetech.arm_cli import main

ROOT = Path(__file__).resolve().parents[2]
ACTUATOR = "com.vlaedge.Actuator"
SWEEP = [-5, 0, 1, 500, 757, 758, 759, 1500, 2047, 2048, 2600, 3291, 3292, 3500, 4095]
VALUES = [-120.0, -100.0, -45.5, -0.3, 0.0, 12.3, 50.0, 99.9, 100.0, 130.0]


@pytest.fixture
def calibration_file(tmp_path: Path) -> Path:
    return write_calibration(tmp_path / "so101_follower.json")


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    assert main(["calibration", "import", *argv, "--json"]) == 0
    document: dict[str, Any] = json.loads(capsys.readouterr().out)
    return document


def same_units(a: JointUnits, b: JointUnits) -> bool:
    count = len(a.names)
    return (a.names, a.ids, a.modes) == (b.names, b.ids, b.modes) and all(
        a.to_units(i, ticks) == b.to_units(i, ticks) and a.to_ticks(i, v) == b.to_ticks(i, v)
        for i in range(count) for ticks in SWEEP for v in VALUES
    )  # fmt: skip


def apply_update(deployed: dict[str, Any], defaults: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """What the nucleus does with a configurationUpdate: reset each pointer to its default (or remove
    it when there is none), then merge."""
    result = copy.deepcopy(deployed)
    for pointer in update["reset"]:
        key = pointer.lstrip("/")
        assert "/" not in key  # our resets are top-level keys
        if key in defaults:
            result[key] = copy.deepcopy(defaults[key])
        else:
            result.pop(key, None)
    return deep_merge(result, json.loads(update["merge"]))


@pytest.mark.parametrize("norm_mode", ["degrees", "range_m100_100"])
def test_json_output_gives_the_actuator_the_files_units(
    calibration_file: Path, capsys: pytest.CaptureFixture[str], norm_mode: str
) -> None:
    document = run_json(capsys, str(calibration_file), "--norm-mode", norm_mode)
    assert document["component"] == ACTUATOR and document["componentVersion"] == "0.1.0"
    assert document["calibration"] == SO101_CALIBRATION
    update = document["configurationUpdate"]
    assert update["reset"] == ["/calibration", "/calibrationFile"]
    merged = json.loads(update["merge"])  # a JSON string, as CreateDeployment wants it
    assert merged == {"calibration": SO101_CALIBRATION, "normMode": norm_mode}
    inline = load_config(ActuatorConfig, merged)
    from_file = load_config(ActuatorConfig, {"calibrationFile": str(calibration_file), "normMode": norm_mode})
    assert same_units(JointUnits.from_config(inline), JointUnits.from_config(from_file))


def test_the_update_replaces_an_earlier_calibration_on_the_deployed_configuration(
    calibration_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Reset, then merge: motors of the old calibration and an old calibrationFile do not survive."""
    defaults = load_recipe(ROOT / "components" / "actuator" / "recipe.yaml").default_configuration
    old = calibration(gripper={"range_min": 100}, spare_motor={"id": 7, "drive_mode": 0, "homing_offset": 0,
                                                                  "range_min": 1, "range_max": 2})  # fmt: skip
    for deployed in (
        {**defaults, "calibration": old},
        {**defaults, "calibrationFile": "/var/lib/arm/old.json", "normMode": "range_m100_100"},
    ):
        update = run_json(capsys, str(calibration_file))["configurationUpdate"]
        after = apply_update(deployed, defaults, update)
        assert after["calibration"] == SO101_CALIBRATION and after["calibrationFile"] == ""
        assert after["normMode"] == deployed["normMode"]  # not asked to change it: left alone
        config = load_config(ActuatorConfig, after)
        assert config.joint_calibration() is not None


def test_local_deployment_command_is_the_greengrass_cli_with_reset_and_merge(
    calibration_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    document = run_json(capsys, str(calibration_file), "--component-version", "1.2.3")
    deploy, restart = document["greengrassCli"]
    argv = shlex.split(deploy)
    assert argv[:4] == ["sudo", "/greengrass/v2/bin/greengrass-cli", "deployment", "create"]
    assert argv[argv.index("--merge") + 1] == f"{ACTUATOR}=1.2.3"
    update_config = json.loads(argv[argv.index("--update-config") + 1])
    assert update_config == {
        ACTUATOR: {"RESET": ["/calibration", "/calibrationFile"], "MERGE": {"calibration": SO101_CALIBRATION}}
    }
    assert shlex.split(restart) == ["sudo", "/greengrass/v2/bin/greengrass-cli", "component", "restart",
                                    "--names", ACTUATOR]  # fmt: skip


def test_text_output_and_output_file(calibration_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    output = tmp_path / "update.json"
    assert vla_edge_main(["arm", "calibration", "import", str(calibration_file), "--output", str(output)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"LeRobot calibration {calibration_file} fits the 6 joints of the actuator's defaults:"
    assert lines[1].split() == ["joint", "id", "drive_mode", "homing_offset", "range_min", "range_max"]
    assert lines[4].split() == ["elbow_flex", "3", "1", "-540", "868", "3100"]
    commands = [line for line in lines if line.startswith("sudo /greengrass/v2/bin/greengrass-cli ")]
    assert len(commands) == 2
    printed = json.loads(next(line for line in lines if line.startswith('{"reset"')))
    assert printed == json.loads(output.read_text())
    assert json.loads(printed["merge"]) == {"calibration": SO101_CALIBRATION}
    assert f"(also written to {output})" in lines
    assert lines[-2] == f"3. On this machine: vla-edge up --calibration {calibration_file}"
    assert lines[-1].endswith(f"vla-edge arm calibration import {calibration_file} --run-dir <its run directory>")


def test_motors_the_actuator_does_not_drive_are_left_out(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    path = write_calibration(tmp_path / "extra.json", calibration(
        spare={"id": 9, "drive_mode": 0, "homing_offset": 0, "range_min": 10, "range_max": 20}))  # fmt: skip
    assert run_json(capsys, str(path))["calibration"] == SO101_CALIBRATION
    assert "['spare']" in caplog.text and "left out" in caplog.text


def test_a_config_file_chooses_the_joints(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Two joints on other servo ids: the file must match those, and only they are kept."""
    joints = [{"name": "shoulder_pan", "id": 1, "minDeg": -90, "maxDeg": 90},
              {"name": "gripper", "id": 6, "minDeg": 0, "maxDeg": 100}]  # fmt: skip
    config = tmp_path / "arm.yaml"
    config.write_text(json.dumps({"joints": joints, "calibrationFile": "/old.json"}))
    path = write_calibration(tmp_path / "cal.json")
    document = run_json(capsys, str(path), "--config", str(config))
    assert sorted(document["calibration"]) == ["gripper", "shoulder_pan"]


BAD_INPUTS: list[tuple[str, Any, str]] = [
    ("missing file", None, "does not exist (lerobot-calibrate writes it under"),
    ("bad JSON", "{\"shoulder_pan\": ", "is not valid JSON"),
    ("not an object", [1, 2], "must be a non-empty object of motor name -> calibration"),
    ("missing motors", calibration(gripper=None, wrist_roll=None), "has no calibration for motors ['wrist_roll', 'gripper']"),
    ("missing field", calibration(elbow_flex={"range_max": None}), "range_max must be an integer"),
    ("wrong ids", calibration(shoulder_pan={"id": 2}, shoulder_lift={"id": 1}),
     "was made for other servo ids: shoulder_pan is servo 1 but was calibrated as servo 2; shoulder_lift is servo 2"),
    ("empty range", calibration(wrist_flex={"range_min": 3190, "range_max": 3190}),
     "motor 'wrist_flex': range_min (3190) must be below range_max (3190)"),
    ("inverted range", calibration(gripper={"range_min": 3410, "range_max": 2010}), "range_min (3410) must be below"),
    ("range off the encoder", calibration(wrist_roll={"range_max": 4096}), "range 0..4096 is outside the encoder's 0..4095"),
    ("homing offset", calibration(elbow_flex={"homing_offset": 2048}), "homing_offset 2048 is beyond ±2047"),
]


@pytest.mark.parametrize(("case", "content", "message"), BAD_INPUTS, ids=[case for case, _, _ in BAD_INPUTS])
def test_every_bad_input_is_one_line_and_exit_code_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str, content: Any, message: str
) -> None:
    path = tmp_path / "calibration.json"
    if isinstance(content, str):
        path.write_text(content)
    elif content is not None:
        write_calibration(path, content)
    output = tmp_path / "update.json"
    assert main(["calibration", "import", str(path), "--output", str(output)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and not output.exists()
    assert captured.err.startswith("vla-edge arm: ") and captured.err.count("\n") == 1, captured.err
    assert message in captured.err


def test_a_directory_and_a_bad_config_are_refused_too(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["calibration", "import", str(tmp_path)]) == 2
    assert "is not a file" in capsys.readouterr().err
    config = tmp_path / "arm.yaml"
    config.write_text("joints: 3\n")
    assert main(["calibration", "import", str(write_calibration(tmp_path / "c.json")), "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "joints" in err


# -- --run-dir: the update deployed to a running local core --------------------------------------------


@pytest.fixture
def actuator_core() -> Iterator[Callable[..., LocalCore]]:
    """Start a local core serving the project's actuator recipe (the actuator itself does not run)."""
    with contextlib.ExitStack() as stack:
        def start(overrides: dict[str, Any] | None = None) -> LocalCore:
            run_dir = stack.enter_context(short_run_dir())
            core = LocalCore(run_dir, [ROOT / "components" / "actuator" / "recipe.yaml"], overrides)
            stack.callback(core.stop)
            return core.start()

        yield start


def test_run_dir_deploys_the_calibration_to_the_running_core(
    actuator_core: Callable[..., LocalCore], calibration_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    core = actuator_core({ACTUATOR: {"calibrationFile": "/var/lib/arm/old.json"}})
    assert main(["calibration", "import", str(calibration_file), "--run-dir", str(core.run_dir)]) == 0
    configuration = core.configuration(ACTUATOR)
    assert configuration["calibration"] == SO101_CALIBRATION
    assert configuration["calibrationFile"] == ""  # reset to the recipe's default, as the nucleus does
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"LeRobot calibration {calibration_file} deployed to {ACTUATOR} on the core in {core.run_dir}:"
    assert out[1].startswith("deployment ") and out[1].endswith(": SUCCEEDED")
    assert out[2].endswith("; 31 key(s) changed: /calibration/... (30), /calibrationFile")  # 6 motors x 5 fields
    assert load_config(ActuatorConfig, configuration).joint_calibration() is not None


def test_run_dir_checks_the_cores_joints_and_answers_json(
    actuator_core: Callable[..., LocalCore], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    joints = [{"name": "shoulder_pan", "id": 1, "minDeg": -90, "maxDeg": 90},
              {"name": "gripper", "id": 6, "minDeg": 0, "maxDeg": 100}]  # fmt: skip
    core = actuator_core({ACTUATOR: {"joints": joints}})
    path = write_calibration(tmp_path / "cal.json")
    assert main(["calibration", "import", str(path), "--run-dir", str(core.run_dir), "--norm-mode",
                 "range_m100_100", "--json"]) == 0  # fmt: skip
    document = json.loads(capsys.readouterr().out)
    assert document["deployment"]["status"] == "SUCCEEDED"
    assert document["updateConfig"][ACTUATOR]["RESET"] == ["/calibration", "/calibrationFile"]
    configuration = core.configuration(ACTUATOR)
    assert sorted(configuration["calibration"]) == ["gripper", "shoulder_pan"]  # the core's two joints
    assert configuration["normMode"] == "range_m100_100"
    assert document["deployment"]["components"][ACTUATOR]["configuration"] == configuration


def test_run_dir_rejection_is_one_line_and_exit_code_1(
    actuator_core: Callable[..., LocalCore], calibration_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import awsiot.greengrasscoreipc
    from awsiot.greengrasscoreipc import model
    from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2

    core = actuator_core()
    before = core.configuration(ACTUATOR)
    environment = core.environment(ACTUATOR)
    client = GreengrassCoreIPCClientV2(client=awsiot.greengrasscoreipc.connect(
        ipc_socket=environment["AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT"],
        authtoken=environment["SVCUID"]), executor=None)  # fmt: skip

    def reject(event: model.ValidateConfigurationUpdateEvents) -> None:
        report = model.ConfigurationValidityReport(
            status="REJECTED", deployment_id=event.validate_configuration_update_event.deployment_id,
            message="the arm is\nmoving")  # fmt: skip
        client.send_configuration_validity_report_async(configuration_validity_report=report)

    try:
        client.subscribe_to_validate_configuration_updates(on_stream_event=reject)
        assert main(["calibration", "import", str(calibration_file), "--run-dir", str(core.run_dir)]) == 1
    finally:
        client.close().result(5)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1
    assert captured.err.startswith("vla-edge arm: deployment ")
    assert f"{ACTUATOR} rejected the configuration: the arm is moving" in captured.err
    assert core.configuration(ACTUATOR) == before


def test_run_dir_without_a_core_or_with_config(
    calibration_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["calibration", "import", str(calibration_file), "--run-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no local core is running" in err
    config = tmp_path / "arm.yaml"
    config.write_text("{}")
    argv = ["calibration", "import", str(calibration_file), "--run-dir", str(tmp_path), "--config", str(config)]
    assert main(argv) == 2
    assert "leave out --config" in capsys.readouterr().err
