"""``vla-edge arm calibration import FILE``: a LeRobot calibration as a deployment's configuration update.

``lerobot-calibrate`` writes one JSON file per arm. A fleet cannot ship that file to each
device, so the actuator also takes the calibration inline, in its ``calibration`` key, which a
Greengrass deployment can carry. This command checks the file against the actuator
configuration's joints (names, servo ids, ranges) and prints what puts it there:

* the Greengrass CLI command for a local deployment on the device, and the restart that makes
  the actuator read it (it reads its configuration when it starts);
* the ``configurationUpdate`` of ``com.vlaedge.Actuator`` for a cloud deployment (console,
  ``aws greengrassv2 create-deployment``, fleet tooling), which ``--output FILE`` writes.

The update resets ``/calibration`` before merging the new one: Greengrass merges objects key by
key, so without the reset the motors of an earlier calibration that the new one lacks would
stay. It resets ``/calibrationFile`` too (its default is empty), because the actuator refuses a
configuration that has both. The nucleus applies the resets before the merge.

For ``vla-edge up`` on a development machine, ``vla-edge up --calibration FILE`` starts the
actuator with the same inline calibration (:func:`inline_calibration` does the checking for both).
``--run-dir DIR`` deploys the update to a local core that is already running there (``vla-edge up``,
``vla-edge core serve``), as the device's local deployment would, through the core's control socket
(:func:`vla_edge.core.control.deploy_configuration`): the file is checked against the joints of that
core's actuator configuration, the actuator may validate it, and the core's configuration of
``com.vlaedge.Actuator`` is changed. A running actuator reads its configuration when it starts, so
the calibration takes effect at its next start; the core keeps it until the core stops.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from vla_edge import __version__
from vla_edge.components.actuator.calibration import (
    FIELDS,
    calibration_to_json,
    load_calibration,
)
from vla_edge.components.actuator.config import ActuatorConfig
from vla_edge.components.base import load_config
from vla_edge.errors import ConfigurationError, VlaEdgeError
from vla_edge.motors.feetech.arm_setup import ArmCliError, ArmSetup, say
from vla_edge.motors.feetech.arm_status import format_table

log = logging.getLogger(__name__)

ACTUATOR = "com.vlaedge.Actuator"
GREENGRASS_CLI = "/greengrass/v2/bin/greengrass-cli"
RESET_PATHS = ("/calibration", "/calibrationFile")
MAX_TICK = 4095
MAX_HOMING_OFFSET = 2047
"""The STS3215's Homing_Offset register holds a sign and 11 bits of magnitude."""
CALIBRATION_HINT = "lerobot-calibrate writes it under ~/.cache/huggingface/lerobot/calibration/robots/<robot type>/<id>.json"


def inline_calibration(path: Path, config: ActuatorConfig) -> dict[str, dict[str, int]]:
    """The LeRobot calibration at ``path`` for ``config``'s joints, as the inline ``calibration`` value.

    Checks what the actuator would refuse at start, and what would make it drive the wrong servo:
    every joint calibrated, each with its own servo id, ``range_min < range_max`` inside the
    encoder's 0..4095, a homing offset the servo can hold. Motors the configuration does not have
    are left out (logged). Raises :class:`ArmCliError` with one line naming the problem.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise ArmCliError(f"calibration file {path} does not exist ({CALIBRATION_HINT})")
    if not path.is_file():
        raise ArmCliError(f"calibration file {path} is not a file ({CALIBRATION_HINT})")
    try:
        calibration = load_calibration(path, config.names)
    except ConfigurationError as exc:
        raise ArmCliError(" ".join(str(exc).split())) from exc
    wrong = [
        f"{joint.name} is servo {joint.id} but was calibrated as servo {calibration[joint.name].id}"
        for joint in config.joints
        if calibration[joint.name].id != joint.id
    ]
    if wrong:
        raise ArmCliError(f"calibration file {path} was made for other servo ids: {'; '.join(wrong)}")
    for name in config.names:
        entry = calibration[name]
        if entry.range_min < 0 or entry.range_max > MAX_TICK:
            raise ArmCliError(f"calibration file {path}: motor {name!r}: range {entry.range_min}..{entry.range_max} "
                              f"is outside the encoder's 0..{MAX_TICK}")  # fmt: skip
        if abs(entry.homing_offset) > MAX_HOMING_OFFSET:
            raise ArmCliError(f"calibration file {path}: motor {name!r}: homing_offset {entry.homing_offset} is "
                              f"beyond ±{MAX_HOMING_OFFSET}, more than an STS3215 can hold")  # fmt: skip
    extra = sorted(set(calibration) - set(config.names))
    if extra:
        log.warning("calibration file %s also calibrates %s, which the actuator does not drive: left out", path, extra)
    return calibration_to_json({name: calibration[name] for name in config.names})


def calibrated_config(setup: ArmSetup, inline: Mapping[str, Mapping[str, int]], norm_mode: str | None = None
                      ) -> ActuatorConfig:
    """The actuator configuration with ``inline`` as its calibration, validated as the actuator will."""
    raw = {key: value for key, value in setup.raw.items() if key not in ("calibration", "calibrationFile")}
    raw["calibration"] = {name: dict(entry) for name, entry in inline.items()}
    if norm_mode is not None:
        raw["normMode"] = norm_mode
    try:
        return load_config(ActuatorConfig, raw)
    except ConfigurationError as exc:
        raise ArmCliError(str(exc)) from exc


def merge_document(inline: Mapping[str, Mapping[str, int]], norm_mode: str | None = None) -> dict[str, Any]:
    """The configuration to merge: the calibration, and ``normMode`` when asked for."""
    document: dict[str, Any] = {"calibration": {name: dict(entry) for name, entry in inline.items()}}
    if norm_mode is not None:
        document["normMode"] = norm_mode
    return document


def configuration_update(inline: Mapping[str, Mapping[str, int]], norm_mode: str | None = None) -> dict[str, Any]:
    """A cloud deployment's ``configurationUpdate`` (``merge`` is a JSON string, as the API wants)."""
    merge = json.dumps(merge_document(inline, norm_mode), separators=(",", ":"))
    return {"reset": list(RESET_PATHS), "merge": merge}


def local_commands(inline: Mapping[str, Mapping[str, int]], version: str, norm_mode: str | None = None) -> list[str]:
    """The device's commands: a local deployment with the update, then restart the actuator."""
    update = {ACTUATOR: {"RESET": list(RESET_PATHS), "MERGE": merge_document(inline, norm_mode)}}
    deploy = (f"sudo {GREENGRASS_CLI} deployment create --merge {ACTUATOR}={version} "
              f"--update-config {shlex.quote(json.dumps(update, separators=(',', ':')))}")  # fmt: skip
    restart = f"sudo {GREENGRASS_CLI} component restart --names {ACTUATOR}"
    return [deploy, restart]


def add_parser(commands: Any, common: argparse.ArgumentParser) -> None:
    """``calibration import FILE`` under the ``vla-edge arm`` parser."""
    calibration = commands.add_parser(
        "calibration", help="put a LeRobot calibration into the deployed actuator's configuration",
        description="Work with LeRobot calibration files (lerobot-calibrate output).")  # fmt: skip
    actions = calibration.add_subparsers(dest="action", metavar="ACTION", required=True)
    imported = actions.add_parser(
        "import", parents=[common],
        help="check a LeRobot calibration file and print the deployment update that puts it inline",
        description=(
            "Check a LeRobot calibration file against the actuator configuration's joints (names, servo ids, "
            "ranges) and print (1) the greengrass-cli commands for a local deployment on the device, (2) the "
            "configurationUpdate of com.vlaedge.Actuator for a cloud deployment, (3) the vla-edge up flag. "
            "The update resets /calibration and /calibrationFile, then merges the calibration inline, so "
            "motors of an earlier calibration do not linger. With --run-dir it deploys the update to a running "
            "local core instead (a failed deployment: one error line, exit code 1). Bad input: one error line, "
            "exit code 2."
        ),
    )  # fmt: skip
    imported.add_argument("file", type=Path, metavar="FILE", help="the LeRobot calibration JSON of this arm")
    imported.add_argument("--component-version", default=__version__, metavar="VERSION",
                          help=f"the actuator version deployed on the device (default {__version__}; "
                               "`greengrass-cli component list` shows it)")  # fmt: skip
    imported.add_argument("--norm-mode", choices=("degrees", "range_m100_100"), dest="set_norm_mode",
                          help="also set normMode (the units of the policy this arm runs); default: leave it")
    imported.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    imported.add_argument("--output", type=Path, metavar="FILE", help="also write the configurationUpdate JSON here")
    imported.add_argument("--run-dir", type=Path, metavar="DIR",
                          help="deploy the update to the local core running in DIR (vla-edge up / vla-edge core "
                               "serve), checked against that core's actuator configuration; failure: exit code 1")


def run_import(args: argparse.Namespace, setup: ArmSetup) -> int:
    """Validate, then print (and with ``--output`` write) the update, or deploy it with ``--run-dir``.

    Raises :class:`ArmCliError` for bad input (exit code 2).
    """
    if getattr(args, "run_dir", None) is not None:
        return deploy_to_core(args)
    inline = inline_calibration(args.file, setup.config)
    config = calibrated_config(setup, inline, args.set_norm_mode)
    update = configuration_update(inline, args.set_norm_mode)
    commands = local_commands(inline, args.component_version, args.set_norm_mode)
    if args.output is not None:
        try:
            args.output.write_text(json.dumps(update, indent=2) + "\n", encoding="utf-8")
        except OSError as exc:
            raise ArmCliError(f"cannot write --output {args.output}: {exc}") from exc
    if args.json:
        document = {
            "source": str(args.file),
            "component": ACTUATOR,
            "componentVersion": args.component_version,
            "normMode": config.norm_mode,
            "calibration": inline,
            "configurationUpdate": update,
            "greengrassCli": commands,
        }
        say(json.dumps(document, indent=2))
        return 0
    say(_text(args, setup, config, inline, update, commands))
    return 0


def _text(args: argparse.Namespace, setup: ArmSetup, config: ActuatorConfig, inline: Mapping[str, Mapping[str, int]],
          update: Mapping[str, Any], commands: list[str]) -> str:
    rows = [(name, *(str(entry[field]) for field in FIELDS)) for name, entry in inline.items()]
    body = "degrees (0° mid-range)" if config.norm_mode == "degrees" else "range_m100_100"
    norm = "" if args.set_norm_mode else " (the deployed normMode applies; --norm-mode sets it)"
    written = f"\n(also written to {args.output})" if args.output is not None else ""
    return "\n".join([
        f"LeRobot calibration {args.file} fits the {len(inline)} joints of {setup.source}:",
        format_table(("joint", *FIELDS), rows),
        (f"With it the actuator's positions, limits and maxStepDeg are in LeRobot units: body joints {body}, "
         f"gripper range_0_100{norm}."),
        "",
        "1. On the device: a local deployment, then a restart (the actuator reads its configuration when it starts):",
        *commands,
        "",
        (f"2. A cloud deployment (console, aws greengrassv2 create-deployment, fleet tooling): the configurationUpdate "
         f"of {ACTUATOR}, for this arm's own thing, not a group (a calibration belongs to one arm):"),
        json.dumps(update) + written,
        "",
        "3. On this machine: vla-edge up --calibration " + shlex.quote(str(args.file)),
        (f"   or, to a vla-edge up (or vla-edge core serve) already running: vla-edge arm calibration import "
         f"{shlex.quote(str(args.file))} --run-dir <its run directory>"),
    ])  # fmt: skip


def core_setup(run_dir: Path) -> ArmSetup:
    """The actuator configuration of the core running in ``run_dir``, without its calibration.

    That core's joints (``vla-edge up --config`` may have changed them) are what the calibration
    has to fit, not the recipe's defaults. A core that cannot be reached is a VlaEdgeError.
    """
    from vla_edge.core.control import read_configuration

    raw = {key: value for key, value in read_configuration(run_dir, ACTUATOR).items()
           if key not in ("calibration", "calibrationFile", "accessControl")}  # fmt: skip
    try:
        config = load_config(ActuatorConfig, raw)
    except ConfigurationError as exc:
        raise ArmCliError(f"the {ACTUATOR} configuration of the core in {run_dir} is not valid: {exc}") from exc
    return ArmSetup(config, raw, {}, f"{ACTUATOR} on the core in {run_dir}")


def deploy_to_core(args: argparse.Namespace) -> int:
    """``--run-dir``: deploy the update to a running local core; 0 when it went through, 1 when not."""
    from vla_edge.core.control import deploy_configuration
    from vla_edge.core.deployments import describe

    if args.config is not None:
        raise ArmCliError("--config and --run-dir both name the actuator configuration: with --run-dir the "
                          "running core's is the one the calibration must fit; leave out --config")
    try:
        setup = core_setup(args.run_dir)
    except VlaEdgeError as exc:
        return _failed(str(exc))
    inline = inline_calibration(args.file, setup.config)
    calibrated_config(setup, inline, args.set_norm_mode)  # refuses what the actuator would refuse at start
    update = {ACTUATOR: {"RESET": list(RESET_PATHS), "MERGE": merge_document(inline, args.set_norm_mode)}}
    if args.output is not None:
        try:
            args.output.write_text(json.dumps(configuration_update(inline, args.set_norm_mode), indent=2) + "\n",
                                   encoding="utf-8")
        except OSError as exc:
            raise ArmCliError(f"cannot write --output {args.output}: {exc}") from exc
    try:
        result = deploy_configuration(args.run_dir, update)
    except VlaEdgeError as exc:
        return _failed(f"deploying to the core in {args.run_dir}: {exc}")
    if result.status != "SUCCEEDED":
        return _failed(f"deployment {result.deployment_id} to the core in {args.run_dir} failed: {result.error}")
    if args.json:
        say(json.dumps({"source": str(args.file), "component": ACTUATOR, "runDir": str(args.run_dir),
                        "calibration": inline, "updateConfig": update, "deployment": result.to_dict()}, indent=2))
        return 0
    say("\n".join([
        f"LeRobot calibration {args.file} deployed to {ACTUATOR} on the core in {args.run_dir}:",
        *describe(result),
        (f"A running {ACTUATOR} reads its configuration when it starts: the calibration applies from its next "
         "start. The core keeps it until the core stops (vla-edge up --calibration sets it at start)."),
    ]))  # fmt: skip
    return 0


def _failed(text: str) -> int:
    """A deployment that did not go through: one line on stderr, exit code 1 (the input itself was fine)."""
    sys.stderr.write("vla-edge arm: " + " ".join(text.split()) + "\n")
    return 1
