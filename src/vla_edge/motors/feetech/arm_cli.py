"""``vla-edge arm``: look at and move an SO-101 arm's STS3215 servos from the command line.

``status``
    A table of every configured joint: servo id, present position and goal (degrees, via
    :mod:`vla_edge.components.actuator.units`), temperature (°C), voltage (V), load (% of
    the maximum torque), moving flag, torque flag and the error bits of its status packet.
``torque-off``
    Switch torque off on every configured servo and confirm it servo by servo.
``pose NAME``
    Move to a named pose (``rest``, ``zero`` or one of the configuration file's ``poses``)
    by writing goals at ``controlHz`` that change no joint by more than ``maxStepDeg`` per
    tick and stay inside the joint limits (:func:`~vla_edge.components.actuator.safety.clamp_goal`),
    then exit with torque on: the servos hold the pose. Ctrl-C or SIGTERM while moving holds
    the arm where it is and switches torque off.

The joints come from the actuator's defaults (its recipe's ``DefaultConfiguration``) or
from ``--config FILE``: YAML or JSON with the actuator's keys (``joints``, ``maxStepDeg``,
``controlHz``, ``serialPort``, ``baudrate``, ``packetTimeoutMs``...) and optionally
``poses``: a mapping of pose name to ``{joint name: degrees}``; joints a pose leaves out
stay where they are. ``--port`` overrides ``serialPort``.

A joint that starts outside its limits is brought inside them at ``maxStepDeg`` per tick
rather than in one jump (the goal never moves further out than where the joint already is).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import signal
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import Any, TextIO, cast

from vla_edge.components.actuator.component import make_servo_bus
from vla_edge.components.actuator.config import ActuatorConfig
from vla_edge.components.actuator.safety import clamp_goal
from vla_edge.components.actuator.units import degrees_to_ticks, ticks_to_degrees
from vla_edge.components.base import load_config
from vla_edge.errors import ConfigurationError, ServoBusError
from vla_edge.motors.feetech import tables
from vla_edge.motors.feetech.bus import FeetechBus

log = logging.getLogger(__name__)

REST_POSE: dict[str, float] = {
    "shoulder_pan": 0.0,
    "shoulder_lift": -95.0,
    "elbow_flex": 95.0,
    "wrist_flex": 60.0,
    "wrist_roll": 0.0,
    "gripper": 0.0,
}
"""SO-101 folded rest pose (joint angles before calibration: 2048 ticks = 0°); joints not named
here stay where they are. A configuration file's ``poses.rest`` replaces it."""

STATUS_REGISTERS = (
    tables.TORQUE_ENABLE,
    tables.GOAL_POSITION,
    tables.PRESENT_POSITION,
    tables.PRESENT_LOAD,
    tables.PRESENT_VOLTAGE,
    tables.PRESENT_TEMPERATURE,
    tables.MOVING,
)
ARRIVED_DEG = 2.0
"""``pose`` waits (up to ``--settle-s``) for every joint to be this close to its goal."""


class ArmCliError(Exception):
    """A problem the user can fix (bad pose name, bad configuration file)."""


# --- configuration ---------------------------------------------------------------------------


def load_arm_config(path: Path | None, port: str | None) -> tuple[ActuatorConfig, dict[str, dict[str, float]]]:
    """The actuator configuration (defaults or ``path``) and the poses the file defines."""
    raw: dict[str, Any] = {}
    if path is not None:
        import yaml

        try:
            loaded = yaml.safe_load(path.read_text())  # YAML is a superset of JSON
        except (OSError, yaml.YAMLError) as exc:
            raise ArmCliError(f"cannot read configuration {path}: {exc}") from exc
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ArmCliError(f"{path}: the configuration must be a mapping of actuator keys")
        raw = dict(loaded)
    poses = _parse_poses(raw.pop("poses", None) or {}, path)
    if port is not None:
        raw["serialPort"] = port
    try:
        config = load_config(ActuatorConfig, raw)
    except ConfigurationError as exc:
        raise ArmCliError(str(exc)) from exc
    names = set(config.names)
    for pose, joints in poses.items():
        unknown = sorted(set(joints) - names)
        if unknown:
            raise ArmCliError(f"pose {pose!r} names joints {unknown} that are not configured ({sorted(names)})")
    return config, poses


def _parse_poses(raw: Any, path: Path | None) -> dict[str, dict[str, float]]:
    if not isinstance(raw, dict):
        raise ArmCliError(f"{path}: 'poses' must map pose names to {{joint: degrees}}")
    poses: dict[str, dict[str, float]] = {}
    for name, joints in raw.items():
        if not isinstance(joints, dict):
            raise ArmCliError(f"{path}: pose {name!r} must map joint names to degrees")
        pose: dict[str, float] = {}
        for joint, value in joints.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ArmCliError(f"{path}: pose {name!r} joint {joint!r} is {value!r}, not a finite number of degrees")
            pose[str(joint)] = float(value)
        poses[str(name)] = pose
    return poses


def pose_targets(name: str, config: ActuatorConfig, poses: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """Joint name → degrees for the named pose (joints left out stay where they are)."""
    if name in poses:
        return dict(poses[name])
    if name == "zero":
        return {joint: 0.0 for joint in config.names}
    if name == "rest":
        return {joint: deg for joint, deg in REST_POSE.items() if joint in config.names}
    known = sorted({"rest", "zero", *poses})
    raise ArmCliError(f"unknown pose {name!r}; known poses: {', '.join(known)}")


def _say(text: str) -> None:
    """The command's answer to the person who ran it (stdout); diagnostics go through logging."""
    sys.stdout.write(text + "\n")


def make_bus(config: ActuatorConfig) -> FeetechBus:
    """The same servo bus the actuator component opens, from the same configuration."""
    return cast(FeetechBus, make_servo_bus(config))  # make_servo_bus builds a FeetechBus; the CLI reads its registers


# --- status ----------------------------------------------------------------------------------


def read_status(bus: FeetechBus, config: ActuatorConfig) -> list[dict[str, Any]]:
    rows = []
    for joint in config.joints:
        values, error = bus.read_registers(joint.id, STATUS_REGISTERS)
        rows.append(
            {
                "name": joint.name,
                "id": joint.id,
                "position_deg": ticks_to_degrees(values[tables.PRESENT_POSITION.name]),
                "goal_deg": ticks_to_degrees(values[tables.GOAL_POSITION.name]),
                "temperature_c": values[tables.PRESENT_TEMPERATURE.name],
                "voltage_v": values[tables.PRESENT_VOLTAGE.name] / 10.0,
                "load_pct": values[tables.PRESENT_LOAD.name] / 10.0,
                "moving": bool(values[tables.MOVING.name]),
                "torque": bool(values[tables.TORQUE_ENABLE.name]),
                "error": error,
                "errors": tables.describe_error_bits(error),
            }
        )
    return rows


def format_status(rows: Sequence[Mapping[str, Any]]) -> str:
    header = ("joint", "id", "pos °", "goal °", "temp °C", "volt V", "load %", "moving", "torque", "errors")
    lines = [
        (
            str(r["name"]), str(r["id"]), f"{r['position_deg']:.1f}", f"{r['goal_deg']:.1f}",
            str(r["temperature_c"]), f"{r['voltage_v']:.1f}", f"{r['load_pct']:.1f}",
            "yes" if r["moving"] else "no", "on" if r["torque"] else "off", str(r["errors"]),
        )
        for r in rows
    ]  # fmt: skip
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]
    out = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    out += ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) for line in lines]
    return "\n".join(out)


# --- torque off ------------------------------------------------------------------------------


def torque_off(bus: FeetechBus, config: ActuatorConfig) -> dict[str, bool]:
    """Torque off everywhere (every servo tried), then read each servo back: name → still on?"""
    failure: ServoBusError | None = None
    try:
        bus.set_torque(False)
    except ServoBusError as exc:
        if not bus.is_connected:
            raise
        failure = exc
    still_on: dict[str, bool] = {}
    for joint in config.joints:
        try:
            values, _ = bus.read_registers(joint.id, (tables.TORQUE_ENABLE,))
            still_on[joint.name] = bool(values[tables.TORQUE_ENABLE.name])
        except ServoBusError as exc:
            if not bus.is_connected:
                raise
            log.error("servo %d (%s): cannot confirm torque off: %s", joint.id, joint.name, exc)
            still_on[joint.name] = True
    if failure is not None and not any(still_on.values()):
        log.warning("torque off reported a problem but every servo reads torque off: %s", failure)
    elif failure is not None:
        log.error("%s", failure)
    return still_on


# --- pose ------------------------------------------------------------------------------------


def _quantised_step(goal_deg: float, reference_deg: float, max_step: float) -> int:
    """``goal_deg`` in ticks, moved back toward the reference if rounding made the step too large."""
    ticks = degrees_to_ticks(goal_deg)
    while abs(ticks_to_degrees(ticks) - reference_deg) > max_step + 1e-9:
        ticks += -1 if ticks_to_degrees(ticks) > reference_deg else 1
    return ticks


def move_to_pose(
    bus: FeetechBus,
    config: ActuatorConfig,
    targets: Mapping[str, float],
    stop: threading.Event,
    settle_s: float = 5.0,
    out: TextIO | None = None,
) -> bool:
    """Step the goals to ``targets`` at ``controlHz``; True when reached, False when stopped.

    When stopped, the arm is held where it is and torque goes off.
    """
    ids = config.motor_ids
    lower = [joint.min_deg for joint in config.joints]
    upper = [joint.max_deg for joint in config.joints]
    ticks = bus.sync_read_positions()
    present = [ticks_to_degrees(ticks[i]) for i in ids]
    for joint, deg, low, high in zip(config.joints, present, lower, upper, strict=True):
        if not low <= deg <= high:
            log.warning("%s is at %.1f°, outside its limits [%.1f, %.1f]: bringing it inside gradually",
                        joint.name, deg, low, high)  # fmt: skip
    wanted = [targets.get(joint.name, deg) for joint, deg in zip(config.joints, present, strict=True)]
    final = [min(max(w, low), high) for w, low, high in zip(wanted, lower, upper, strict=True)]
    for joint, w, f in zip(config.joints, wanted, final, strict=True):
        if w != f:
            log.warning("%s: pose asks for %.1f°, clamped to the joint limit %.1f°", joint.name, w, f)
    # Hold first (goal = where the arm is), then torque on: nothing moves yet.
    goal_ticks = {i: ticks[i] for i in ids}
    bus.sync_write_goals(goal_ticks)
    bus.set_torque(True)
    reference = [ticks_to_degrees(goal_ticks[i]) for i in ids]
    period = config.tick_s
    next_tick = time.monotonic()
    try:
        while True:
            if stop.is_set():
                _hold_and_release(bus, config)
                return False
            # The goal never moves further outside the limits than where the joint already is.
            low_now = [min(low, ref) for low, ref in zip(lower, reference, strict=True)]
            high_now = [max(high, ref) for high, ref in zip(upper, reference, strict=True)]
            clamped = clamp_goal(final, reference, low_now, high_now, config.max_step_deg)
            goal_ticks = {
                i: _quantised_step(g, r, config.max_step_deg)
                for i, g, r in zip(ids, clamped.goals, reference, strict=True)
            }
            new_reference = [ticks_to_degrees(goal_ticks[i]) for i in ids]
            if new_reference == reference:
                break
            bus.sync_write_goals(goal_ticks)
            reference = new_reference
            next_tick += period
            stop.wait(max(0.0, next_tick - time.monotonic()))
        deadline = time.monotonic() + settle_s
        while time.monotonic() < deadline:
            ticks = bus.sync_read_positions()
            if all(abs(ticks_to_degrees(ticks[i]) - r) <= ARRIVED_DEG for i, r in zip(ids, reference, strict=True)):
                break
            if stop.wait(period):
                _hold_and_release(bus, config)
                return False
        else:
            log.warning("not every joint reached its goal within %.1f s (blocked or overloaded?)", settle_s)
    except BaseException:
        _hold_and_release(bus, config)
        raise
    if out is not None:
        ticks = bus.sync_read_positions()
        for joint in config.joints:
            out.write(f"{joint.name:<16} {ticks_to_degrees(ticks[joint.id]):8.1f}°\n")
    return True


def _hold_and_release(bus: FeetechBus, config: ActuatorConfig) -> None:
    """Goal := present position, then torque off (what the actuator does on stop)."""
    try:
        ticks = bus.sync_read_positions()
        bus.sync_write_goals({i: ticks[i] for i in config.motor_ids})
    except ServoBusError as exc:
        log.error("could not hold the arm before releasing it: %s", exc)
    bus.set_torque(False)


# --- command line ----------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vla-edge arm", description="Inspect and move an SO-101 arm's servos.")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--port", metavar="DEV", help="serial port of the servo bus (default: the config's serialPort)")
    common.add_argument("--config", type=Path, metavar="FILE", help="YAML/JSON with actuator keys and optional poses")
    common.add_argument("--log-level", default="WARNING", help="logging level on stderr (default WARNING)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    status = commands.add_parser("status", parents=[common], help="table of joints: position, goal, temperature...")
    status.add_argument("--json", action="store_true", help="print JSON instead of a table")
    commands.add_parser("torque-off", parents=[common], help="switch torque off on every configured servo")
    pose = commands.add_parser("pose", parents=[common], help="move safely to a named pose, then hold it")
    pose.add_argument("name", help="rest, zero, or a pose from --config")
    pose.add_argument("--settle-s", type=float, default=5.0, help="how long to wait for the joints to arrive")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config, poses = load_arm_config(args.config, args.port)
        targets = pose_targets(args.name, config, poses) if args.command == "pose" else {}
    except ArmCliError as exc:
        log.error("%s", exc)
        return 2
    bus = make_bus(config)
    try:
        bus.connect()
    except ServoBusError as exc:
        log.error("%s", exc)
        return 1
    try:
        if args.command == "status":
            rows = read_status(bus, config)
            _say(json.dumps(rows, indent=2) if args.json else format_status(rows))
            return 0
        if args.command == "torque-off":
            still_on = torque_off(bus, config)
            for name, on in still_on.items():
                _say(f"{name:<16} torque {'STILL ON' if on else 'off'}")
            if any(still_on.values()):
                return 1
            _say(f"torque off on all {len(still_on)} servos")
            return 0
        return _run_pose(bus, config, args.name, targets, args.settle_s)
    except ServoBusError as exc:
        log.error("%s", exc)
        return 1
    finally:
        bus.disconnect()


def _run_pose(bus: FeetechBus, config: ActuatorConfig, name: str, targets: dict[str, float], settle_s: float) -> int:
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.warning("signal %d: holding and switching torque off", signum)
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        reached = move_to_pose(bus, config, targets, stop, settle_s, out=sys.stdout)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if not reached:
        _say(f"interrupted: arm held and torque off (pose {name!r} not reached)")
        return 130
    _say(f"at pose {name!r}; torque stays on and the servos hold it (vla-edge arm torque-off releases)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
