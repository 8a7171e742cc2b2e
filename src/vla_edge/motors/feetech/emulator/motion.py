"""Exact trapezoidal motion for one emulated servo shaft.

An STS3215 in position mode ramps its speed up at the ``Acceleration`` rate, cruises at
no more than its speed cap, and ramps down so that it stops on the goal. Between two
changes of phase the acceleration is constant, so a step of any length can be integrated
exactly, phase by phase: the emulator's result does not depend on how often it is polled,
and a test that steps an injected clock gets the same trajectory as one that runs in
real time.

Positions are in encoder steps (floats), velocities in steps/s, accelerations in
steps/s². Every function returns the new state and the :class:`Segment` list it went
through, which the telemetry model uses to integrate load and heat.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

log = logging.getLogger(__name__)

POSITION_EPS = 1e-6
"""Steps: closer than this to the goal, with no speed left, the shaft has arrived."""
VELOCITY_EPS = 1e-6
"""Steps/s below which a shaft counts as stopped."""
_MAX_PHASES = 64
"""Phase changes handled in one step; a trapezoid has at most four (brake, ramp, cruise, stop)."""


@dataclass(frozen=True)
class Segment:
    """A stretch of constant acceleration: ``duration`` s starting at ``velocity`` steps/s."""

    duration: float
    velocity: float
    acceleration: float

    @property
    def end_velocity(self) -> float:
        return self.velocity + self.acceleration * self.duration


def move_to_position(
    position: float, velocity: float, target: float, max_speed: float, acceleration: float, dt: float
) -> tuple[float, float, list[Segment]]:
    """Advance ``dt`` seconds toward ``target`` on a trapezoidal profile.

    The speed never exceeds ``max_speed`` (if it already does, because the cap was just
    lowered, the shaft brakes down to it); the shaft lands on ``target`` with zero speed.
    A goal moved so close that even full braking overshoots is overshot and approached
    again, as a real servo with a bounded acceleration must.
    """
    if max_speed <= 0 or acceleration <= 0:
        raise ValueError(f"speed cap {max_speed} and acceleration {acceleration} must be positive")
    segments: list[Segment] = []
    for _ in range(_MAX_PHASES):
        if dt <= 0:
            break
        distance = target - position
        if abs(distance) <= POSITION_EPS and abs(velocity) <= VELOCITY_EPS:
            segments.append(Segment(dt, 0.0, 0.0))
            return target, 0.0, segments
        direction = 1.0 if distance > 0 else -1.0 if distance < 0 else (-1.0 if velocity > 0 else 1.0)
        remaining = abs(distance)
        speed = velocity * direction  # toward the target; negative while moving away from it
        landing = False
        end_speed: float | None = None
        if speed < 0:  # moving away (the goal jumped behind us): brake
            accel, duration, end_speed = acceleration, -speed / acceleration, 0.0
        elif speed * speed / (2 * acceleration) >= remaining - POSITION_EPS:
            needed = speed * speed / (2 * remaining) if remaining > 0 else math.inf
            if needed <= acceleration * (1 + 1e-6):  # on the braking curve: stop exactly on the target
                accel, duration, landing = -needed, speed / needed, True
            else:  # too late to stop: brake fully, overshoot, come back
                accel, duration, end_speed = -acceleration, speed / acceleration, 0.0
        elif speed > max_speed + VELOCITY_EPS:  # the cap was lowered: brake down to it
            accel, duration, end_speed = -acceleration, (speed - max_speed) / acceleration, max_speed
        elif speed < max_speed - VELOCITY_EPS:  # ramp up until the cap or the braking point
            to_cap = (max_speed - speed) / acceleration
            to_brake = (-speed + math.sqrt(speed * speed / 2 + acceleration * remaining)) / acceleration
            accel, duration = acceleration, min(to_cap, to_brake)
            end_speed = max_speed if to_cap <= to_brake else None
        else:  # cruise until the braking point
            speed = max_speed
            accel, duration = 0.0, (remaining - speed * speed / (2 * acceleration)) / speed
        h = min(dt, max(duration, 0.0))
        signed_accel = accel * direction
        start_velocity = speed * direction
        segments.append(Segment(h, start_velocity, signed_accel))
        dt -= h
        if h >= duration:  # the phase completed: snap to its exact end state (no float drift)
            if landing:
                position, velocity = target, 0.0
                continue
            position += start_velocity * duration + signed_accel * duration * duration / 2
            velocity = (end_speed if end_speed is not None else speed + accel * duration) * direction
        else:
            position += start_velocity * h + signed_accel * h * h / 2
            velocity = start_velocity + signed_accel * h
    if dt > 0:  # not reached in practice; keep the clock honest rather than lose time
        log.warning("motion: %d phases in one step, holding for the remaining %.6f s", _MAX_PHASES, dt)
        segments.append(Segment(dt, velocity, 0.0))
        position += velocity * dt
    return position, velocity, segments


def move_at_velocity(
    position: float, velocity: float, target_velocity: float, acceleration: float, dt: float
) -> tuple[float, float, list[Segment]]:
    """Advance ``dt`` seconds ramping toward ``target_velocity`` (constant-speed mode)."""
    if acceleration <= 0:
        raise ValueError(f"acceleration {acceleration} must be positive")
    segments: list[Segment] = []
    change = target_velocity - velocity
    if abs(change) > VELOCITY_EPS:
        ramp_time = abs(change) / acceleration
        h = min(dt, ramp_time)
        accel = math.copysign(acceleration, change)
        segments.append(Segment(h, velocity, accel))
        position += velocity * h + accel * h * h / 2
        velocity = target_velocity if h >= ramp_time else velocity + accel * h
        dt -= h
    elif velocity != target_velocity:
        velocity = target_velocity
    if dt > 0:
        segments.append(Segment(dt, velocity, 0.0))
        position += velocity * dt
    return position, velocity, segments


def trapezoid_duration(distance: float, max_speed: float, acceleration: float) -> float:
    """Time a rest-to-rest move of ``distance`` steps takes (for tests and documentation)."""
    distance = abs(distance)
    ramp_distance = max_speed * max_speed / acceleration  # up and down together
    if distance <= ramp_distance:  # triangular: the cap is never reached
        return 2 * math.sqrt(distance / acceleration)
    return 2 * max_speed / acceleration + (distance - ramp_distance) / max_speed
