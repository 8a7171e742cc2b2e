"""One emulated STS3215: its control table, EEPROM and lock, power cycle, and physics.

Memory semantics, as Feetech documents them:

* **EEPROM and Lock.** Addresses 0-39 and the factory area (80-86) are EEPROM. A write
  there acts at once in either case; ``Lock`` decides whether it is also *saved*:
  Feetech's libraries name ``Lock = 0`` "open EPROM saving" and ``Lock = 1`` "close EPROM
  saving" (``unLockEprom``/``LockEprom`` in FTServo's ``SMS_STS``), and their examples
  unlock before changing an id. So with ``Lock`` at 1 (its power-on value) an EEPROM
  write is lost at the next power cycle. LeRobot's ``disable_torque`` writes
  ``Torque_Enable = 0`` then ``Lock = 0`` before it writes EEPROM (``configure``,
  calibration), and ``enable_torque`` writes ``Lock = 1`` afterwards.
* **Power cycle.** EEPROM comes back from what was saved; RAM gets its power-on values:
  torque off, ``Lock`` 1, ``Torque_Limit`` = ``Max_Torque_Limit``, ``Goal_Position`` = the
  present position (so switching torque on holds the arm where it is).
* **Position frame.** Present_Position = shaft - Homing_Offset, wrapped to 0..4095
  (LeRobot: "Present_Position = Actual_Position - Homing_Offset"); the goal is clamped
  to ``Min/Max_Position_Limit`` in that same frame when min < max.
* **Protections.** An error bit that is also set in ``Unloading_Condition`` switches the
  torque off (see ``telemetry.py`` for when the bits are set). Bits a test injects with
  ``set_error_bits`` are only reported, never acted on.

Operating modes 0 (position) and 1 (constant speed) move; modes 2 (PWM) and 3 (step)
hold still, since their encodings are not documented well enough to emulate honestly.
"""

from __future__ import annotations

import logging

from vla_edge.motors.feetech import tables as t
from vla_edge.motors.feetech.emulator.motion import VELOCITY_EPS, Segment, move_at_velocity, move_to_position
from vla_edge.motors.feetech.emulator.telemetry import CURRENT_UNIT_A, Protection, ServoPhysics, Telemetry

log = logging.getLogger(__name__)

MAX_SUBSTEP_S = 0.05
"""With torque on, time advances in steps no longer than this, so protections trip within 50 ms."""
READ_ONLY = frozenset(
    address
    for reg in t.STS3215_REGISTERS.values()
    if not reg.writable
    for address in range(reg.address, reg.address + reg.size)
)
MODE_POSITION, MODE_VELOCITY = 0, 1


def factory_settings(servo_id: int, model_number: int) -> tuple[tuple[t.Register, int], ...]:
    """EEPROM values of an STS3215 as an SO-101 arm has them after LeRobot's setup.

    Where Feetech documents a value it is used (P 32, D 32, I 0 per LeRobot's comments;
    70 °C limit; 1 Mbps); ``Return_Delay_Time`` is 0 because LeRobot's
    ``configure_motors`` writes 0 (with ``Lock`` 0) on every connect. ``Unloading_Condition``
    44 (overheat, overcurrent, overload) and the protection values are those commonly
    reported for STS3215 factory settings; registers the emulator does not act on hold
    plausible values only so that reads return something.
    """
    return (
        (t.FIRMWARE_MAJOR, 3), (t.FIRMWARE_MINOR, 10), (t.MODEL_NUMBER, model_number), (t.ID, servo_id),
        (t.BAUD_RATE, 0), (t.RETURN_DELAY_TIME, 0), (t.RESPONSE_STATUS_LEVEL, 1),
        (t.MIN_POSITION_LIMIT, 0), (t.MAX_POSITION_LIMIT, t.MAX_POSITION), (t.MAX_TEMPERATURE_LIMIT, 70),
        (t.MAX_VOLTAGE_LIMIT, 140), (t.MIN_VOLTAGE_LIMIT, 40), (t.MAX_TORQUE_LIMIT, 1000), (t.PHASE, 12),
        (t.UNLOADING_CONDITION, 44), (t.LED_ALARM_CONDITION, 47), (t.P_COEFFICIENT, 32), (t.D_COEFFICIENT, 32),
        (t.I_COEFFICIENT, 0), (t.MINIMUM_STARTUP_FORCE, 16), (t.CW_DEAD_ZONE, 1), (t.CCW_DEAD_ZONE, 1),
        (t.PROTECTION_CURRENT, 500), (t.ANGULAR_RESOLUTION, 1), (t.HOMING_OFFSET, 0), (t.OPERATING_MODE, 0),
        (t.PROTECTIVE_TORQUE, 20), (t.PROTECTION_TIME, 200), (t.OVERLOAD_TORQUE, 80), (t.VELOCITY_P, 10),
        (t.OVER_CURRENT_PROTECTION_TIME, 200), (t.VELOCITY_I, 200), (t.MOVING_VELOCITY_THRESHOLD, 1),
        (t.DTS, 1), (t.VELOCITY_UNIT_FACTOR, 1), (t.MAXIMUM_VELOCITY_LIMIT, 0), (t.MAXIMUM_ACCELERATION, 254),
        (t.ACCELERATION_MULTIPLIER, 0),
    )  # fmt: skip


class EmulatedServo:
    """Control table plus shaft: what one STS3215 on the chain knows and does."""

    def __init__(self, servo_id: int, position: int, model_number: int, physics: ServoPhysics) -> None:
        self.mem = bytearray(t.TABLE_SIZE)
        for reg, value in factory_settings(servo_id, model_number):
            self.set(reg, value)
        self.saved = bytearray(self.mem)
        """The EEPROM image a power cycle restores (only persistent addresses are used)."""
        self.physics = physics
        self.shaft = float(position)
        """Encoder steps, unwrapped: Present_Position + Homing_Offset."""
        self.velocity = 0.0
        self.acceleration_now = 0.0
        """Steps/s² the shaft is accelerating at (the last motion segment's), for the load reading."""
        self.telemetry = Telemetry(physics)
        self.injected_errors = 0
        self.offline = False
        self.pending: tuple[int, bytes] | None = None
        self._protection: Protection | None = None
        self.power_on()

    # --- memory --------------------------------------------------------------------------

    @property
    def id(self) -> int:
        return self.mem[t.ID.address]

    @property
    def baudrate(self) -> int | None:
        """Bits per second this servo listens at, ``None`` for an undefined code (it hears nothing)."""
        return t.BAUDRATES_BY_CODE.get(self.mem[t.BAUD_RATE.address])

    def get(self, reg: t.Register) -> int:
        raw = int.from_bytes(self.mem[reg.address : reg.address + reg.size], "little")  # hot path: inlined decode
        if reg.sign_bit is None:
            return raw
        magnitude = raw & ((1 << reg.sign_bit) - 1)
        return -magnitude if raw >> reg.sign_bit & 1 else magnitude

    def set(self, reg: t.Register, value: int) -> None:
        self.mem[reg.address : reg.address + reg.size] = t.encode_value(reg, value).to_bytes(reg.size, "little")

    def read(self, address: int, length: int) -> bytes | None:
        if length < 1 or address + length > len(self.mem):
            return None
        return bytes(self.mem[address : address + length])

    def write(self, address: int, data: bytes) -> bool:
        """A WRITE as the firmware applies it; ``False`` (instruction error) past the table."""
        if not data or address + len(data) > len(self.mem):
            return False
        saving = self.mem[t.LOCK.address] == 0
        torque_was_on = bool(self.get(t.TORQUE_ENABLE))
        offset_before, mode_before = self.get(t.HOMING_OFFSET), self.get(t.OPERATING_MODE)
        self._protection = None
        for index, byte in enumerate(data):
            target = address + index
            if target in READ_ONLY:
                continue
            self.mem[target] = byte
            if saving and t.is_persistent(target):
                self.saved[target] = byte
        if self.get(t.TORQUE_ENABLE) and not torque_was_on:
            self.telemetry.clear_latched()  # switching torque on again is how a tripped servo is reset
        if self.get(t.HOMING_OFFSET) != offset_before or self.get(t.OPERATING_MODE) != mode_before:
            self._wrap()
        self.refresh()
        return True

    def power_on(self) -> None:
        """Restore saved EEPROM and power-on RAM (the shaft, and its temperature, stay where they are)."""
        for address in range(t.TABLE_SIZE):
            self.mem[address] = self.saved[address] if t.is_persistent(address) else 0
        self._protection = None
        self.velocity = self.acceleration_now = 0.0
        self.pending = None
        self.telemetry.clear_latched()
        self._wrap()
        self.set(t.GOAL_POSITION, self.present_position())
        self.set(t.TORQUE_LIMIT, self.get(t.MAX_TORQUE_LIMIT))
        self.set(t.LOCK, 1)
        self.refresh()

    # --- physics -------------------------------------------------------------------------

    def present_position(self) -> int:
        return round(self.shaft - self.get(t.HOMING_OFFSET)) % t.RESOLUTION

    def _wrap(self) -> None:
        """Keep the shaft within one turn of the present frame (a single-turn absolute encoder).

        The turn is [-0.5, 4095.5) steps, so that the shaft is where its reading says: a shaft
        at 4095.6 reads 0 and must sit at -0.4, or a goal of 0 would send it the long way round.
        """
        offset = self.get(t.HOMING_OFFSET)
        self.shaft = offset + (self.shaft - offset + 0.5) % t.RESOLUTION - 0.5

    def target(self) -> float:
        """Where position mode drives the shaft: the goal, clamped to the limits, plus the offset."""
        goal = self.get(t.GOAL_POSITION)
        low, high = self.get(t.MIN_POSITION_LIMIT), self.get(t.MAX_POSITION_LIMIT)
        if low < high:
            goal = min(max(goal, low), high)
        return float(goal + self.get(t.HOMING_OFFSET))

    def speed_cap(self) -> float:
        """``Goal_Velocity`` (steps/s), 0 meaning the no-load maximum, never above it."""
        requested = abs(self.get(t.GOAL_VELOCITY))
        return min(float(requested), self.physics.max_speed) if requested else self.physics.max_speed

    def acceleration(self) -> float:
        """``Acceleration`` × 100 steps/s², 0 meaning the servo's maximum; ``Maximum_Acceleration`` caps it."""
        rate = self.get(t.ACCELERATION) * 100.0 or self.physics.max_acceleration
        ceiling = self.get(t.MAXIMUM_ACCELERATION) * 100.0
        if ceiling:
            rate = min(rate, ceiling)
        return min(rate, self.physics.max_acceleration)

    def protection(self) -> Protection:
        """The protection registers, decoded (cached until the next write or power cycle)."""
        if self._protection is None:
            self._protection = self._read_protection()
        return self._protection

    def _read_protection(self) -> Protection:
        return Protection(
            torque_limit=float(self.get(t.TORQUE_LIMIT)),
            overload_threshold=self.get(t.OVERLOAD_TORQUE) * 10.0,
            protection_time_s=self.get(t.PROTECTION_TIME) * 0.01,
            protective_torque=self.get(t.PROTECTIVE_TORQUE) * 10.0,
            protection_current_a=self.get(t.PROTECTION_CURRENT) * CURRENT_UNIT_A,
            overcurrent_time_s=self.get(t.OVER_CURRENT_PROTECTION_TIME) * 0.01,
            max_temperature_c=self.get(t.MAX_TEMPERATURE_LIMIT),
            min_voltage=self.get(t.MIN_VOLTAGE_LIMIT) / 10.0,
            max_voltage=self.get(t.MAX_VOLTAGE_LIMIT) / 10.0,
        )

    def error_bits(self, protection: Protection | None = None) -> int:
        """The status packet's error byte: injected faults plus what the physics reports."""
        return (self.injected_errors | self.telemetry.error_bits(protection or self.protection())) & 0x7F

    def advance(self, dt: float) -> None:
        """Let ``dt`` seconds pass: move, heat or cool, and trip protections."""
        if dt <= 0:
            return
        if self._quiescent():
            return  # limp, still and at idle temperature: nothing can change, the registers are current
        protection = self.protection()
        while dt > 0:
            torque_on = bool(self.get(t.TORQUE_ENABLE))
            h = min(dt, MAX_SUBSTEP_S) if torque_on else dt
            dt -= h
            segments = self._move(h) if torque_on else self._rest(h)
            self.acceleration_now = segments[-1].acceleration if segments and self.velocity else 0.0
            self.telemetry.integrate(segments, torque_on, protection)
            tripped = self.telemetry.error_bits(protection) & self.get(t.UNLOADING_CONDITION)
            if torque_on and tripped:
                log.info("servo %d: %s, torque switched off", self.id, t.describe_error_bits(tripped))
                self.set(t.TORQUE_ENABLE, 0)
        self.refresh()

    def _quiescent(self) -> bool:
        telemetry = self.telemetry
        return (
            not self.mem[t.TORQUE_ENABLE.address]
            and self.velocity == 0.0
            and abs(telemetry.temperature - self.physics.idle_temperature_c) < 1e-3
            and not telemetry.latched
            and not telemetry.overheated
        )

    def _rest(self, h: float) -> list[Segment]:
        self.velocity = 0.0
        self._wrap()
        return [Segment(h, 0.0, 0.0)]

    def _move(self, h: float) -> list[Segment]:
        mode = self.get(t.OPERATING_MODE)
        if mode == MODE_POSITION:
            self.shaft, self.velocity, segments = move_to_position(
                self.shaft, self.velocity, self.target(), self.speed_cap(), self.acceleration(), h
            )
            return segments
        if mode == MODE_VELOCITY:
            cap = self.physics.max_speed
            wanted = max(-cap, min(cap, float(self.get(t.GOAL_VELOCITY))))
            self.shaft, self.velocity, segments = move_at_velocity(
                self.shaft, self.velocity, wanted, self.acceleration(), h
            )
            return segments
        return self._rest(h)

    def is_moving(self) -> bool:
        """``Moving``: in position mode, until the present position reads the (clamped) goal.

        The last half step of a landing is crawled at low speed; counting it as arrival keeps
        ``Moving`` and ``Present_Position`` consistent for a client polling both.
        """
        if not self.get(t.TORQUE_ENABLE):
            return False
        if self.get(t.OPERATING_MODE) == MODE_POSITION:
            return round(self.shaft) != round(self.target())
        return abs(self.velocity) > VELOCITY_EPS

    def refresh(self) -> None:
        """Write the present state into the read-only registers."""
        telemetry = self.telemetry
        protection = self.protection()
        torque_on = bool(self.get(t.TORQUE_ENABLE))
        telemetry.settle(self.velocity, self.acceleration_now if torque_on else 0.0, torque_on, protection)
        self.set(t.PRESENT_POSITION, self.present_position())
        self.set(t.PRESENT_VELOCITY, max(-32767, min(32767, round(self.velocity))))
        self.set(t.PRESENT_LOAD, telemetry.load_reading())
        self.set(t.PRESENT_VOLTAGE, telemetry.voltage_reading())
        self.set(t.PRESENT_TEMPERATURE, telemetry.temperature_reading())
        self.set(t.PRESENT_CURRENT, telemetry.current_reading())
        self.set(t.MOVING, int(self.is_moving()))
        self.set(t.STATUS, self.error_bits(protection) & ~t.ERR_INSTRUCTION)
