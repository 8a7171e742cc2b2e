"""The ``vla-edge`` command: run the suite locally, the local core, and the arm emulator."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from vla_edge import __version__
from vla_edge.errors import VlaEdgeError

log = logging.getLogger("vla_edge")

_DELEGATED = {
    "core": "the local Greengrass core (development and CI stand-in for the nucleus)",
    "camera": "list this machine's cameras, or write one frame of a configured camera to a file",
    "emulate-arm": "serve an emulated SO-101 arm (six STS3215 servos) on a pseudo-terminal",
    "model": "describe a LeRobot policy directory for delivery: 'vla-edge model manifest DIR'",
    "fleet": "push images to ECR, publish components, deploy to thing groups, watch rollouts, list devices",
    "arm": "the arm's servos in joint units (status), torque off, safe poses, LeRobot calibration import",
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vla-edge",
        description="Run LeRobot VLA policies on edge robots as AWS IoT Greengrass v2 components.",
    )
    parser.add_argument("--version", action="version", version=f"vla-edge {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    up = commands.add_parser(
        "up",
        help="run camera, inference, actuator and model-updater locally over the real IPC protocol",
        description=(
            "Start the local Greengrass core and the four components as separate processes. With no "
            "flags: synthetic camera, emulated arm, untrained demo policy. Ctrl-C stops everything cleanly."
        ),
    )
    up.add_argument("--duration", type=float, metavar="SECONDS", help="stop after this long once every component is RUNNING")
    up.add_argument("--json", action="store_true", help="print a JSON summary on stdout at the end")
    up.add_argument("--camera", metavar="SOURCE", help="camera source: a device index (0), /dev/videoN, a video file or a stream URL")
    up.add_argument("--serial-port", metavar="DEV", help="the arm's serial port (default: start the arm emulator)")
    up.add_argument(
        "--policy", metavar="DIR",
        help="a LeRobot pretrained policy directory to start with (default: untrained demo ACT). With its "
        "vla_edge_manifest.json (vla-edge model manifest DIR --version V) the model-updater verifies it into the "
        "run's model store (RUN_DIR/store) and records it active; later models go out with vla-edge core deploy "
        "--run-dir RUN_DIR --update-config '{\"com.vlaedge.ModelUpdater\": {\"MERGE\": {\"model\": {\"source\": "
        "\"local\", \"path\": \"/abs/dir\"}}}}'",
    )  # fmt: skip
    up.add_argument("--config", type=Path, metavar="FILE", help="YAML/JSON mapping component name to configuration overrides")
    up.add_argument("--run-dir", type=Path, metavar="DIR", help="where the socket, tokens and logs go (default: a new temp dir)")
    up.add_argument("--recipes", type=Path, metavar="DIR", help="folder of component recipes (default: ./components)")
    up.add_argument("--cache-dir", type=Path, metavar="DIR", help="model cache (default: $VLA_EDGE_CACHE or ~/.cache/vla-edge)")
    up.add_argument(
        "--calibration", type=Path, metavar="FILE",
        help="LeRobot calibration JSON (lerobot-calibrate output) for the actuator, inline; checked first (exit 2 if bad)",
    )  # fmt: skip
    for name, text in _DELEGATED.items():
        commands.add_parser(name, help=text, add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list and args_list[0] in _DELEGATED:
        return _delegate(args_list[0], args_list[1:])
    args = _parser().parse_args(args_list)
    if args.command is None:
        _parser().print_help()
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from vla_edge.up import UpOptions, run_up

    options = UpOptions(
        duration_s=args.duration,
        json_summary=args.json,
        camera=args.camera,
        serial_port=args.serial_port,
        policy=args.policy,
        config=args.config,
        run_dir=args.run_dir,
        recipes_dir=args.recipes,
        cache_dir=args.cache_dir,
        calibration=args.calibration,
    )
    if options.calibration is not None:
        from vla_edge.up import build_overrides

        try:  # a bad calibration is the user's to fix: say so before anything starts
            build_overrides(options, "/dev/null", Path("/dev/null"))
        except VlaEdgeError as exc:
            log.error("%s", exc)
            return 2
    try:
        return run_up(options)
    except VlaEdgeError as exc:
        log.error("%s", exc)
        return 1


def _delegate(command: str, rest: list[str]) -> int:
    if command == "core":
        from vla_edge.core.cli import main as core_main

        return core_main(rest)
    if command == "camera":
        from vla_edge.cameras.cli import main as camera_main

        return camera_main(rest)
    if command == "model":
        from vla_edge.updater.cli import main as model_main

        return model_main(rest)
    if command == "fleet":
        from vla_edge.fleet.cli import main as fleet_main

        return fleet_main(rest)
    if command == "arm":
        from vla_edge.motors.feetech.arm_cli import main as arm_main

        return arm_main(rest)
    from vla_edge.motors.feetech.emulator_cli import main as emulator_main

    return emulator_main(rest)
