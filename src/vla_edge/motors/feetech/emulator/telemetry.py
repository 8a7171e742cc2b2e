"""Load, current, temperature, voltage and the protections of one emulated STS3215.

The numbers are a coarse physical model, chosen to land where a real STS3215 C018
(12 V, 30 kg·cm, 1:345) lands, not fitted to a datasheet curve:

* **Load** (``Present_Load``, 0.1 % of stall torque): the torque the servo spends on the
  motion (inertia while it accelerates, friction while it turns) plus an external load
  a test can apply (gravity on a joint, a blocked gripper), clamped to ``Torque_Limit``.
* **Current** (``Present_Current``, 6.5 mA units): a small holding current with torque
  on, plus the stall current scaled by the load (a DC motor's current follows its torque).
* **Temperature** (``Present_Temperature``, °C): first-order heating toward a steady
  state that rises with the square of the load (copper loss), cooling toward the idle
  temperature. With the defaults a servo at half load warms about 20 °C in ten minutes,
  as reported for an STS3215 holding 15 kg·cm (robonine.com STS3215 tests), and one at
  full load passes the 70 °C ``Max_Temperature_Limit`` in a few minutes.
* **Voltage** (``Present_Voltage``, 0.1 V): the supply, set by a test hook.

Protections follow Feetech's memory table: a load above ``Overload_Torque`` % for
``Protection_Time`` × 10 ms latches the overload bit and limits the output to
``Protective_Torque`` %; a current above ``Protection_Current`` for
``Over_Current_Protection_Time`` × 10 ms latches the overcurrent bit (the 10 ms unit of
that last register is an assumption). The voltage bit is live; the overheat bit sets
above ``Max_Temperature_Limit`` and clears only :data:`OVERHEAT_HYSTERESIS_C` below it
(an assumption: without some hysteresis the bit would vanish the instant an unloaded
servo starts to cool, before any client could read it). Whether a bit also switches the
torque off is the servo's ``Unloading_Condition`` (see ``servo.py``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from vla_edge.motors.feetech import tables as t
from vla_edge.motors.feetech.emulator.motion import VELOCITY_EPS, Segment

CURRENT_UNIT_A = 0.0065
"""``Present_Current`` and ``Protection_Current`` count 6.5 mA steps (Feetech memory table)."""
INERTIA_LOAD = 100.0
"""Load (0.1 %) spent accelerating at the servo's maximum acceleration: 10 % for an unloaded horn."""
FRICTION_LOAD = 30.0
"""Load (0.1 %) to keep the gear train turning at any speed (3 %)."""
VISCOUS_LOAD = 50.0
"""Extra load (0.1 %) at full speed; with friction about 0.2 A, near a real STS3215's no-load current."""
OVERHEAT_HYSTERESIS_C = 5
"""The overheat bit clears once the temperature reads this far below the limit."""


@dataclass(frozen=True)
class ServoPhysics:
    """Physical constants of the emulated servo (defaults: an STS3215 C018 at 12 V)."""

    max_speed: float = 4096 / 6 / 0.222
    """Steps/s at no load: Feetech rates the STS3215 at 0.222 s/60° at 12 V, about 3075 steps/s."""
    max_acceleration: float = 254 * 100.0
    """Steps/s² when ``Acceleration`` is 0: the largest rate the register can ask for (254 × 100)."""
    idle_temperature_c: float = 30.0
    """What an idle servo's sensor reads in a room (the board runs a few degrees warm)."""
    full_load_rise_c: float = 90.0
    """Steady-state rise above idle when holding stall torque indefinitely (protection trips first)."""
    thermal_time_constant_s: float = 240.0
    stall_current_a: float = 2.7
    idle_current_a: float = 0.03
    """Drawn with torque on and nothing to do (the position loop and driver)."""
    supply_voltage: float = 12.0


@dataclass(frozen=True)
class Protection:
    """The protection registers of one servo, decoded into SI units."""

    torque_limit: float
    """0.1 % of stall torque."""
    overload_threshold: float
    protection_time_s: float
    protective_torque: float
    protection_current_a: float
    overcurrent_time_s: float
    max_temperature_c: int
    min_voltage: float
    max_voltage: float


class Telemetry:
    """The electrical and thermal state of one servo, integrated over motion segments."""

    def __init__(self, physics: ServoPhysics) -> None:
        self.physics = physics
        self.temperature = physics.idle_temperature_c
        self.supply_voltage = physics.supply_voltage
        self.external_load = 0.0
        """0.1 % of stall torque, signed: what the joint must hold against (test hook)."""
        self.load = 0.0
        self.current = 0.0
        self.latched = 0
        """Overload and overcurrent bits stay set until torque is switched on again or power-cycled."""
        self.overheated = False
        self._overload_s = 0.0
        self._overcurrent_s = 0.0

    def clear_latched(self) -> None:
        self.latched = 0
        self._overload_s = self._overcurrent_s = 0.0

    def _load_at(self, velocity: float, acceleration: float, protection: Protection) -> float:
        p = self.physics
        moving = abs(velocity) > VELOCITY_EPS
        load = (
            self.external_load
            + INERTIA_LOAD * acceleration / p.max_acceleration
            + (math.copysign(FRICTION_LOAD, velocity) if moving else 0.0)
            + VISCOUS_LOAD * velocity / p.max_speed
        )
        cap = protection.torque_limit
        if self.latched & t.ERR_OVERLOAD:
            cap = min(cap, protection.protective_torque)
        return max(-cap, min(cap, load))

    def _current_for(self, load: float, torque_on: bool) -> float:
        if not torque_on:
            return 0.0
        return self.physics.idle_current_a + self.physics.stall_current_a * abs(load) / 1000.0

    def integrate(self, segments: list[Segment], torque_on: bool, protection: Protection) -> None:
        """Account for the time the shaft spent in ``segments`` (loads at each segment's midpoint)."""
        p = self.physics
        for segment in segments:
            h = segment.duration
            if h <= 0:
                continue
            mid = segment.velocity + segment.acceleration * h / 2
            load = self._load_at(mid, segment.acceleration, protection) if torque_on else 0.0
            current = self._current_for(load, torque_on)
            steady = p.idle_temperature_c + p.full_load_rise_c * (load / 1000.0) ** 2
            self.temperature = steady + (self.temperature - steady) * math.exp(-h / p.thermal_time_constant_s)
            reading = self.temperature_reading()
            if reading > protection.max_temperature_c:
                self.overheated = True
            elif reading < protection.max_temperature_c - OVERHEAT_HYSTERESIS_C:
                self.overheated = False
            if torque_on and protection.overload_threshold > 0 and abs(load) > protection.overload_threshold:
                self._overload_s += h
                if self._overload_s >= protection.protection_time_s:
                    self.latched |= t.ERR_OVERLOAD
            else:
                self._overload_s = 0.0
            if torque_on and protection.protection_current_a > 0 and current > protection.protection_current_a:
                self._overcurrent_s += h
                if self._overcurrent_s >= protection.overcurrent_time_s:
                    self.latched |= t.ERR_OVERCURRENT
            else:
                self._overcurrent_s = 0.0

    def settle(self, velocity: float, acceleration: float, torque_on: bool, protection: Protection) -> None:
        """Set the instantaneous load and current for the shaft's present motion."""
        self.load = self._load_at(velocity, acceleration, protection) if torque_on else 0.0
        self.current = self._current_for(self.load, torque_on)

    # --- what the registers report -----------------------------------------------------

    def error_bits(self, protection: Protection) -> int:
        bits = self.latched
        if self.overheated:
            bits |= t.ERR_OVERHEAT
        if not protection.min_voltage <= self.supply_voltage <= protection.max_voltage:
            bits |= t.ERR_VOLTAGE
        return bits

    def load_reading(self) -> int:
        return max(-1000, min(1000, round(self.load)))

    def current_reading(self) -> int:
        return max(0, min(0x7FFF, round(self.current / CURRENT_UNIT_A)))

    def temperature_reading(self) -> int:
        return max(0, min(255, round(self.temperature)))

    def voltage_reading(self) -> int:
        return max(0, min(255, round(self.supply_voltage * 10)))
