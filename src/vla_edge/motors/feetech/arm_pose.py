"""``vla-edge arm pose``: plan a pose in the actuator's joint units and move there safely.

A pose is a set of joint targets in the configured units (uncalibrated degrees, or LeRobot's
units with a calibration): a named pose, ``--joint NAME=VALUE`` values, or both (``--joint``
wins). Joints a pose leaves out stay where they are.

Moving follows the actuator's own rules, so the command is no more dangerous than a policy:
goals go out at ``controlHz``, no goal changes by more than ``maxStepDeg`` (in the configured
units) per tick, and goals stay inside the joint limits (:func:`clamp_goal`). A joint that
starts outside its limits is brought inside them gradually (the goal never moves further out
than where the joint already is). On top of that each goal's change is capped in ticks (what
``maxStepDeg`` is worth in ticks for that joint), because LeRobot's range units clamp at the
calibrated range: a joint standing outside it reads as being on its edge, and without the cap
the first goal would jump to the edge in one tick.

LeRobot 0.4.4 defines no rest or home position for the SO-100/SO-101 (its SO follower assumes
the arm is put in a rest position by hand before connecting), so the named poses here are ours.
"""

from __future__ import annotations

import logging
import math
import signal
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from types import FrameType
from typing import TextIO

from vla_edge.components.actuator.calibration import normalize, unnormalize
from vla_edge.components.actuator.safety import clamp_goal
from vla_edge.components.actuator.units import JointUnits
from vla_edge.errors import ServoBusError
from vla_edge.motors.feetech.arm_setup import UNIT_LABELS, ArmCliError, ArmSetup, say
from vla_edge.motors.feetech.arm_status import format_table, number
from vla_edge.motors.feetech.bus import FeetechBus

log = logging.getLogger(__name__)

REST_POSE_DEG: dict[str, float] = {
    "shoulder_pan": 0.0,
    "shoulder_lift": -95.0,
    "elbow_flex": 95.0,
    "wrist_flex": 60.0,
    "wrist_roll": 0.0,
    "gripper": 0.0,
}
"""SO-101 folded rest pose, our starting point (LeRobot has none): degrees from the middle of each
joint's range (uncalibrated: from 2048 ticks; with a LeRobot calibration: from the middle of the
calibrated range, converted to the configured units). Check it on your arm before relying on it;
a configuration file's ``poses.rest`` replaces it."""

ARRIVED_TICKS = 23
"""``pose`` waits (up to ``--settle-s``) for every joint to be this close to its goal (about 2°)."""


# --- planning --------------------------------------------------------------------------------


def rest_pose(setup: ArmSetup) -> dict[str, float]:
    """:data:`REST_POSE_DEG` in the configured units, for the joints that are configured."""
    calibration = setup.calibration
    pose: dict[str, float] = {}
    for joint, mode in zip(setup.config.joints, setup.joint_modes, strict=True):
        if joint.name not in REST_POSE_DEG:
            continue
        degrees = REST_POSE_DEG[joint.name]
        if calibration is None or mode == "degrees":
            pose[joint.name] = degrees
        else:  # the same physical position, expressed in this joint's LeRobot range units
            entry = calibration[joint.name]
            pose[joint.name] = round(normalize(unnormalize(degrees, entry, "degrees"), entry, mode), 1)
    return pose


def parse_joint_values(values: Sequence[str], setup: ArmSetup) -> dict[str, float]:
    """``--joint NAME=VALUE`` arguments as {joint: value}; unknown joints and non-numbers are refused."""
    names = setup.config.names
    joints: dict[str, float] = {}
    for item in values:
        name, sep, text = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ArmCliError(f"--joint {item!r}: write NAME=VALUE, e.g. --joint shoulder_pan=10")
        if name not in names:
            raise ArmCliError(f"--joint {item!r}: no joint {name!r}; configured joints: {', '.join(names)}")
        try:
            value = float(text)
        except ValueError:
            raise ArmCliError(f"--joint {item!r}: {text!r} is not a number") from None
        if not math.isfinite(value):
            raise ArmCliError(f"--joint {item!r}: the value must be a finite number")
        joints[name] = value
    return joints


def pose_targets(name: str | None, setup: ArmSetup, explicit: Mapping[str, float] | None = None) -> dict[str, float]:
    """Joint name -> value in the configured units: the named pose, then ``explicit`` on top."""
    targets: dict[str, float] = {}
    if name is not None:
        if name in setup.poses:
            targets = dict(setup.poses[name])
        elif name == "zero":
            targets = {joint: 0.0 for joint in setup.config.names}
        elif name == "rest":
            targets = rest_pose(setup)
        else:
            known = sorted({"rest", "zero", *setup.poses})
            raise ArmCliError(f"unknown pose {name!r}; known poses: {', '.join(known)}")
    targets.update(explicit or {})
    if not targets:
        raise ArmCliError("give a pose name (rest, zero or one from --config) or --joint NAME=VALUE")
    return targets


def clamp_targets(setup: ArmSetup, targets: Mapping[str, float], present: Sequence[float]) -> list[float]:
    """Each joint's final goal in units: its target (or where it is) inside the joint limits."""
    final = []
    for joint, now in zip(setup.config.joints, present, strict=True):
        wanted = targets.get(joint.name, now)
        goal = min(max(wanted, joint.min_deg), joint.max_deg)
        if goal != wanted:
            log.warning("%s: pose asks for %.1f, clamped to the joint limit %.1f", joint.name, wanted, goal)
        final.append(goal)
    return final


def format_plan(setup: ArmSetup, present_ticks: Sequence[int], final: Sequence[float]) -> str:
    """Where each joint is and where it will go, in units and ticks, and how many ticks it takes."""
    units = setup.units
    step = setup.config.max_step_deg
    lines = []
    slowest = 0
    for index, joint in enumerate(setup.config.joints):
        now = units.to_units(index, present_ticks[index])
        steps = math.ceil(max(0.0, abs(final[index] - now) - 1e-9) / step)
        slowest = max(slowest, steps)
        lines.append((joint.name, UNIT_LABELS[setup.joint_modes[index]], number(now), number(final[index]),
                      str(present_ticks[index]), str(units.to_ticks(index, final[index])), str(steps)))  # fmt: skip
    table = format_table(("joint", "unit", "now", "target", "ticks now", "ticks target", "steps"), lines)
    seconds = slowest / setup.config.control_hz
    return f"{setup.describe_units()}\n{table}\nabout {seconds:.1f} s at {setup.config.control_hz:g} Hz, at most {step:g} per step"


# --- moving ----------------------------------------------------------------------------------


def _step_ticks(units: JointUnits, index: int, goal: float, reference: float, previous: int, cap: int,
                max_step: float) -> int:
    """Goal ticks for one tick: ``goal`` in ticks, at most ``cap`` ticks from the previous goal and,
    after rounding, at most ``max_step`` units from the reference."""
    ticks = min(max(units.to_ticks(index, goal), previous - cap), previous + cap)
    while ticks != previous and abs(units.to_units(index, ticks) - reference) > max_step + 1e-9:
        ticks += -1 if ticks > previous else 1
    return ticks


def move_to_pose(
    bus: FeetechBus,
    setup: ArmSetup,
    targets: Mapping[str, float],
    stop: threading.Event,
    settle_s: float = 5.0,
    out: TextIO | None = None,
) -> bool:
    """Step the goals to ``targets`` (configured units) at ``controlHz``; True when reached,
    False when stopped. When stopped, the arm is held where it is and torque goes off."""
    config = setup.config
    units = setup.units
    ids = config.motor_ids
    lower = [joint.min_deg for joint in config.joints]
    upper = [joint.max_deg for joint in config.joints]
    caps = [max(1, math.floor(config.max_step_deg * slope + 1e-9)) for slope in setup.ticks_per_unit()]
    read = bus.sync_read_positions()
    goal_ticks = [read[i] for i in ids]
    present = [units.to_units(index, ticks) for index, ticks in enumerate(goal_ticks)]
    for joint, now, low, high in zip(config.joints, present, lower, upper, strict=True):
        if not low <= now <= high:
            log.warning("%s is at %.1f, outside its limits [%.1f, %.1f]: bringing it inside gradually",
                        joint.name, now, low, high)  # fmt: skip
    final = clamp_targets(setup, targets, present)
    if out is not None:
        out.write(format_plan(setup, goal_ticks, final) + "\n")
    # Hold first (goal = where the arm is), then torque on: nothing moves yet.
    bus.sync_write_goals(dict(zip(ids, goal_ticks, strict=True)))
    bus.set_torque(True)
    period = config.tick_s
    next_tick = time.monotonic()
    try:
        while True:
            if stop.is_set():
                _hold_and_release(bus, setup)
                return False
            reference = [units.to_units(index, ticks) for index, ticks in enumerate(goal_ticks)]
            # The goal never moves further outside the limits than where the joint already is.
            low_now = [min(low, ref) for low, ref in zip(lower, reference, strict=True)]
            high_now = [max(high, ref) for high, ref in zip(upper, reference, strict=True)]
            clamped = clamp_goal(final, reference, low_now, high_now, config.max_step_deg)
            new_ticks = [
                _step_ticks(units, index, goal, reference[index], goal_ticks[index], caps[index], config.max_step_deg)
                for index, goal in enumerate(clamped.goals)
            ]
            if new_ticks == goal_ticks:
                break
            bus.sync_write_goals(dict(zip(ids, new_ticks, strict=True)))
            goal_ticks = new_ticks
            next_tick += period
            stop.wait(max(0.0, next_tick - time.monotonic()))
        deadline = time.monotonic() + settle_s
        while time.monotonic() < deadline:
            read = bus.sync_read_positions()
            if all(abs(read[i] - goal) <= ARRIVED_TICKS for i, goal in zip(ids, goal_ticks, strict=True)):
                break
            if stop.wait(period):
                _hold_and_release(bus, setup)
                return False
        else:
            log.warning("not every joint reached its goal within %.1f s (blocked or overloaded?)", settle_s)
    except BaseException:
        _hold_and_release(bus, setup)
        raise
    if out is not None:
        read = bus.sync_read_positions()
        for index, joint in enumerate(config.joints):
            label = UNIT_LABELS[setup.joint_modes[index]]
            value = number(units.to_units(index, read[joint.id]))
            out.write(f"{joint.name:<16} {value:>8} {label:<6} ({read[joint.id]} ticks)\n")
    return True


def _hold_and_release(bus: FeetechBus, setup: ArmSetup) -> None:
    """Goal := present position, then torque off (what the actuator does on stop)."""
    try:
        ticks = bus.sync_read_positions()
        bus.sync_write_goals({i: ticks[i] for i in setup.config.motor_ids})
    except ServoBusError as exc:
        log.error("could not hold the arm before releasing it: %s", exc)
    bus.set_torque(False)


def show_plan(bus: FeetechBus, setup: ArmSetup, targets: Mapping[str, float]) -> int:
    """``pose --dry-run``: read where the arm is, print the plan, write nothing."""
    units = setup.units
    read = bus.sync_read_positions()
    present_ticks = [read[i] for i in setup.config.motor_ids]
    present = [units.to_units(index, ticks) for index, ticks in enumerate(present_ticks)]
    say(format_plan(setup, present_ticks, clamp_targets(setup, targets, present)))
    say("dry run: nothing was written to the servos")
    return 0


def run_pose(bus: FeetechBus, setup: ArmSetup, label: str, targets: Mapping[str, float], settle_s: float) -> int:
    """Move with SIGINT/SIGTERM turned into "hold, then torque off"; exit code 130 when interrupted."""
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.warning("signal %d: holding and switching torque off", signum)
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        reached = move_to_pose(bus, setup, targets, stop, settle_s, out=sys.stdout)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if not reached:
        say(f"interrupted: arm held and torque off ({label} not reached)")
        return 130
    say(f"at {label}; torque stays on and the servos hold it (vla-edge arm torque-off releases)")
    return 0
