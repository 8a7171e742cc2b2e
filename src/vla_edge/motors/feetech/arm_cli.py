"""``vla-edge arm``: look at and move an SO-100/SO-101 arm's STS3215 servos, and import its calibration.

``status``
    A table of every configured joint: servo id, present position and goal in the actuator's
    configured units (the first line says which) beside the raw ticks, temperature (°C),
    voltage (V), load (% of the maximum torque), moving flag, torque flag and error bits.
``torque-off``
    Switch torque off on every configured servo and confirm it servo by servo.
``pose [NAME] [--joint NAME=VALUE ...]``
    Move to a named pose and/or explicit joint values, in the configured units, at no more than
    ``maxStepDeg`` per control tick and inside the joint limits (:mod:`.arm_pose`), then exit with
    torque on: the servos hold the pose. Ctrl-C or SIGTERM while moving holds the arm where it is
    and switches torque off. ``--dry-run`` prints the plan and moves nothing.
``calibration import FILE``
    Check a LeRobot calibration file against the actuator's joints and print the deployment update
    that puts it into the actuator's inline ``calibration`` key (:mod:`.arm_calibration`).

The configuration is the actuator's defaults (its recipe's ``DefaultConfiguration``) or
``--config FILE``: YAML or JSON with the actuator's keys (``joints``, ``maxStepDeg``,
``controlHz``, ``serialPort``, ``calibration``/``calibrationFile``, ``normMode``...) and
optionally ``poses``: pose name -> ``{joint name: value}`` in the configured units.
``--port``, ``--calibration`` and ``--norm-mode`` override the file.

Every user mistake (bad file, unknown pose or joint, bad calibration) is one line on stderr and
exit code 2; a servo bus failure is exit code 1; an interrupted pose 130.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from vla_edge.errors import ServoBusError
from vla_edge.motors.feetech import arm_calibration
from vla_edge.motors.feetech.arm_pose import (
    parse_joint_values,
    pose_targets,
    run_pose,
    show_plan,
)
from vla_edge.motors.feetech.arm_setup import (
    ArmCliError,
    ArmSetup,
    load_arm_setup,
    make_bus,
    say,
)
from vla_edge.motors.feetech.arm_status import (
    format_status,
    read_status,
    status_document,
    torque_off,
)
from vla_edge.motors.feetech.bus import FeetechBus

log = logging.getLogger(__name__)

POSE_HELP = """\
Named poses: 'rest' (SO-101 folded: shoulder_lift -95°, elbow_flex 95°, wrist_flex 60° from the middle
of each joint's range, converted to the configured units), 'zero' (every joint at 0 in the configured
units; with a calibration the gripper's 0 is one end of its range) and the --config file's 'poses'.
LeRobot 0.4.4 defines no rest or home position for the SO-100/SO-101, so 'rest' and 'zero' are our
starting points: check them on the real arm with --dry-run and small maxStepDeg first, and put the
values that suit your arm under 'poses' in a --config file ('poses.rest' replaces ours)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vla-edge arm", description="Inspect and move an SO-100/SO-101 arm's servos; import its LeRobot calibration.")
    config = argparse.ArgumentParser(add_help=False)
    config.add_argument("--config", type=Path, metavar="FILE", help="YAML/JSON with actuator keys and optional poses")
    config.add_argument("--log-level", default="WARNING", help="logging level on stderr (default WARNING)")
    common = argparse.ArgumentParser(add_help=False, parents=[config])
    common.add_argument("--port", metavar="DEV", help="serial port of the servo bus (default: the config's serialPort)")
    common.add_argument("--calibration", type=Path, metavar="FILE",
                        help="LeRobot calibration JSON: positions in LeRobot units (default: the config's calibration)")
    common.add_argument("--norm-mode", choices=("degrees", "range_m100_100"),
                        help="body joints' LeRobot units with a calibration (default: the config's normMode)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    status = commands.add_parser("status", parents=[common], help="table of joints: position (units and ticks), temperature...")
    status.add_argument("--json", action="store_true", help="print JSON instead of a table")
    commands.add_parser("torque-off", parents=[common], help="switch torque off on every configured servo")
    pose = commands.add_parser(
        "pose", parents=[common], help="move safely to a named pose or joint values, then hold",
        description="Move in steps of at most maxStepDeg per control tick, inside the joint limits, then hold.",
        epilog=POSE_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    pose.add_argument("name", nargs="?", help="rest, zero, or a pose from --config (optional with --joint)")
    pose.add_argument("--joint", action="append", default=[], metavar="NAME=VALUE",
                      help="a joint's target in the configured units, e.g. --joint shoulder_pan=10; repeat for more")
    pose.add_argument("--settle-s", type=float, default=5.0, help="how long to wait for the joints to arrive")
    pose.add_argument("--dry-run", action="store_true", help="print the plan (units and ticks) and move nothing")
    arm_calibration.add_parser(commands, config)
    return parser


def _error(text: str) -> int:
    sys.stderr.write(f"vla-edge arm: {text}\n")
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "calibration":
            return arm_calibration.run_import(args, load_arm_setup(args.config, without_calibration=True))
        setup = load_arm_setup(args.config, args.port, args.calibration, args.norm_mode)
        targets = {}
        if args.command == "pose":
            targets = pose_targets(args.name, setup, parse_joint_values(args.joint, setup))
    except ArmCliError as exc:
        return _error(str(exc))
    bus = make_bus(setup.config)
    try:
        bus.connect()
    except ServoBusError as exc:
        log.error("%s", exc)
        return 1
    try:
        return _run(args, setup, bus, targets)
    except ServoBusError as exc:
        log.error("%s", exc)
        return 1
    finally:
        bus.disconnect()


def _run(args: argparse.Namespace, setup: ArmSetup, bus: FeetechBus, targets: dict[str, float]) -> int:
    if args.command == "status":
        rows = read_status(bus, setup)
        say(json.dumps(status_document(setup, rows), indent=2) if args.json else format_status(setup, rows))
        return 0
    if args.command == "torque-off":
        still_on = torque_off(bus, setup)
        for name, on in still_on.items():
            say(f"{name:<16} torque {'STILL ON' if on else 'off'}")
        if any(still_on.values()):
            return 1
        say(f"torque off on all {len(still_on)} servos")
        return 0
    if args.dry_run:
        return show_plan(bus, setup, targets)
    label = f"pose {args.name!r}" if args.name else "the given joint values"
    return run_pose(bus, setup, label, targets, args.settle_s)


if __name__ == "__main__":
    sys.exit(main())
