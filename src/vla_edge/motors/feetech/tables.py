"""Feetech STS3215 facts: control-table registers, model number, baud codes, value encodings.

Sources: the Feetech STS/SMS series memory table (as also used by LeRobot's
``motors/feetech/tables.py``) and the feetech-servo-sdk protocol (protocol 0,
little-endian words). Every register LeRobot 0.4's STS table names is listed (so the
emulator serves whatever LeRobot's SO-100/SO-101 code reads or writes), except
``Goal_Position_2`` (71), whose meaning Feetech does not document.

Memory areas: addresses below :data:`EEPROM_END` are EEPROM and so is the factory area
from :data:`FACTORY_START` (both kept across power cycles, saved only while ``Lock`` is
0); the rest is RAM, reset at power-on.

Signed registers use *sign-magnitude*, not two's complement: one bit of the raw word
is the direction and the remaining low bits are the magnitude. The direction bit is
15 for positions and velocities; Feetech documents bit 11 for the homing offset
(range ±2047) and bit 10 for the load.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

STS3215_MODEL_NUMBER = 777
RESOLUTION = 4096
"""Encoder ticks per revolution (12-bit magnetic encoder)."""
MAX_POSITION = RESOLUTION - 1
PROTOCOL_END = 0
"""feetech-servo-sdk ``PacketHandler(0)``: STS/SMS series, little-endian words."""

BROADCAST_ID = 0xFE
MAX_ID = 0xFC

# Instructions (shared by the bus and the emulator).
INST_PING = 0x01
INST_READ = 0x02
INST_WRITE = 0x03
INST_REG_WRITE = 0x04
INST_ACTION = 0x05
INST_SYNC_READ = 0x82
INST_SYNC_WRITE = 0x83

# Error bits of the status packet's error byte.
ERR_VOLTAGE = 0x01
ERR_ANGLE = 0x02
ERR_OVERHEAT = 0x04
ERR_OVERCURRENT = 0x08
ERR_OVERLOAD = 0x20
ERR_INSTRUCTION = 0x40
ERROR_BIT_NAMES = {
    ERR_VOLTAGE: "input voltage",
    ERR_ANGLE: "angle sensor",
    ERR_OVERHEAT: "overheat",
    ERR_OVERCURRENT: "overcurrent",
    0x10: "checksum",
    ERR_OVERLOAD: "overload",
    ERR_INSTRUCTION: "instruction",
}

BAUDRATE_CODES = {
    1_000_000: 0,
    500_000: 1,
    250_000: 2,
    128_000: 3,
    115_200: 4,
    57_600: 5,
    38_400: 6,
    19_200: 7,
}
"""Baud rate -> ``Baud_Rate`` code as LeRobot's ``STS_SMS_SERIES_BAUDRATE_TABLE`` has it."""
BAUDRATES_BY_CODE = {0: 1_000_000, 1: 500_000, 2: 250_000, 3: 128_000, 4: 115_200, 5: 76_800, 6: 57_600, 7: 38_400}
"""``Baud_Rate`` code -> bits per second as the servo firmware applies it (Feetech's own
``SMS_STS.h`` in the FTServo libraries). Codes 0-4 agree with LeRobot's table; for 5-7
LeRobot's table says 57600/38400/19200. LeRobot itself only ever writes code 0 (1 Mbps)."""


class Register(NamedTuple):
    name: str
    address: int
    size: int
    writable: bool = True
    sign_bit: int | None = None
    """Direction bit of a sign-magnitude value, ``None`` for unsigned registers."""


def _r(name: str, address: int, size: int, writable: bool = True, sign_bit: int | None = None) -> Register:
    return Register(name, address, size, writable, sign_bit)


FIRMWARE_MAJOR = _r("Firmware_Major_Version", 0, 1, writable=False)
FIRMWARE_MINOR = _r("Firmware_Minor_Version", 1, 1, writable=False)
MODEL_NUMBER = _r("Model_Number", 3, 2, writable=False)
ID = _r("ID", 5, 1)
BAUD_RATE = _r("Baud_Rate", 6, 1)
RETURN_DELAY_TIME = _r("Return_Delay_Time", 7, 1)
"""Unit 2 µs; LeRobot's ``configure_motors`` writes 0 (the factory value 250 is 500 µs)."""
RESPONSE_STATUS_LEVEL = _r("Response_Status_Level", 8, 1)
MIN_POSITION_LIMIT = _r("Min_Position_Limit", 9, 2)
MAX_POSITION_LIMIT = _r("Max_Position_Limit", 11, 2)
MAX_TEMPERATURE_LIMIT = _r("Max_Temperature_Limit", 13, 1)
"""°C."""
MAX_VOLTAGE_LIMIT = _r("Max_Voltage_Limit", 14, 1)
"""0.1 V."""
MIN_VOLTAGE_LIMIT = _r("Min_Voltage_Limit", 15, 1)
MAX_TORQUE_LIMIT = _r("Max_Torque_Limit", 16, 2)
"""0.1 % of stall torque; copied into ``Torque_Limit`` at power-on."""
PHASE = _r("Phase", 18, 1)
UNLOADING_CONDITION = _r("Unloading_Condition", 19, 1)
"""Error bits that switch the torque off when they occur."""
LED_ALARM_CONDITION = _r("LED_Alarm_Condition", 20, 1)
P_COEFFICIENT = _r("P_Coefficient", 21, 1)
D_COEFFICIENT = _r("D_Coefficient", 22, 1)
I_COEFFICIENT = _r("I_Coefficient", 23, 1)
MINIMUM_STARTUP_FORCE = _r("Minimum_Startup_Force", 24, 2)
CW_DEAD_ZONE = _r("CW_Dead_Zone", 26, 1)
CCW_DEAD_ZONE = _r("CCW_Dead_Zone", 27, 1)
PROTECTION_CURRENT = _r("Protection_Current", 28, 2)
"""Over-current threshold, 6.5 mA units (LeRobot halves it to 250 for the SO-101 gripper)."""
ANGULAR_RESOLUTION = _r("Angular_Resolution", 30, 1)
HOMING_OFFSET = _r("Homing_Offset", 31, 2, sign_bit=11)
OPERATING_MODE = _r("Operating_Mode", 33, 1)
"""0 position, 1 constant speed, 2 PWM (open loop), 3 step."""
PROTECTIVE_TORQUE = _r("Protective_Torque", 34, 1)
"""% of stall torque the servo still gives once overload protection has tripped."""
PROTECTION_TIME = _r("Protection_Time", 35, 1)
"""10 ms units: how long the load may stay above ``Overload_Torque`` before protection trips."""
OVERLOAD_TORQUE = _r("Overload_Torque", 36, 1)
"""% of stall torque above which the overload timer runs."""
VELOCITY_P = _r("Velocity_closed_loop_P_proportional_coefficient", 37, 1)
OVER_CURRENT_PROTECTION_TIME = _r("Over_Current_Protection_Time", 38, 1)
VELOCITY_I = _r("Velocity_closed_loop_I_integral_coefficient", 39, 1)
TORQUE_ENABLE = _r("Torque_Enable", 40, 1)
ACCELERATION = _r("Acceleration", 41, 1)
"""100 steps/s² units; 0 means the servo's own maximum."""
GOAL_POSITION = _r("Goal_Position", 42, 2, sign_bit=15)
GOAL_TIME = _r("Goal_Time", 44, 2)
GOAL_VELOCITY = _r("Goal_Velocity", 46, 2, sign_bit=15)
"""Steps/s; 0 means the servo's no-load maximum."""
TORQUE_LIMIT = _r("Torque_Limit", 48, 2)
LOCK = _r("Lock", 55, 1)
"""1 (the power-on value): EEPROM writes act but are lost at power-off; 0: they are saved."""
PRESENT_POSITION = _r("Present_Position", 56, 2, writable=False, sign_bit=15)
PRESENT_VELOCITY = _r("Present_Velocity", 58, 2, writable=False, sign_bit=15)
PRESENT_LOAD = _r("Present_Load", 60, 2, writable=False, sign_bit=10)
"""0.1 % of stall torque, direction in bit 10."""
PRESENT_VOLTAGE = _r("Present_Voltage", 62, 1, writable=False)
PRESENT_TEMPERATURE = _r("Present_Temperature", 63, 1, writable=False)
STATUS = _r("Status", 65, 1, writable=False)
MOVING = _r("Moving", 66, 1, writable=False)
PRESENT_CURRENT = _r("Present_Current", 69, 2, writable=False)
"""6.5 mA units."""
MOVING_VELOCITY_THRESHOLD = _r("Moving_Velocity_Threshold", 80, 1)
DTS = _r("DTs", 81, 1)
VELOCITY_UNIT_FACTOR = _r("Velocity_Unit_factor", 82, 1)
HTS = _r("Hts", 83, 1)
MAXIMUM_VELOCITY_LIMIT = _r("Maximum_Velocity_Limit", 84, 1)
MAXIMUM_ACCELERATION = _r("Maximum_Acceleration", 85, 1)
"""Factory area; LeRobot's ``configure_motors`` writes 254 (100 steps/s² units, like ``Acceleration``)."""
ACCELERATION_MULTIPLIER = _r("Acceleration_Multiplier", 86, 1)

STS3215_REGISTERS: dict[str, Register] = {
    reg.name: reg
    for reg in (
        FIRMWARE_MAJOR, FIRMWARE_MINOR, MODEL_NUMBER, ID, BAUD_RATE, RETURN_DELAY_TIME,
        RESPONSE_STATUS_LEVEL, MIN_POSITION_LIMIT, MAX_POSITION_LIMIT, MAX_TEMPERATURE_LIMIT,
        MAX_VOLTAGE_LIMIT, MIN_VOLTAGE_LIMIT, MAX_TORQUE_LIMIT, PHASE, UNLOADING_CONDITION,
        LED_ALARM_CONDITION, P_COEFFICIENT, D_COEFFICIENT, I_COEFFICIENT, MINIMUM_STARTUP_FORCE,
        CW_DEAD_ZONE, CCW_DEAD_ZONE, PROTECTION_CURRENT, ANGULAR_RESOLUTION, HOMING_OFFSET,
        OPERATING_MODE, PROTECTIVE_TORQUE, PROTECTION_TIME, OVERLOAD_TORQUE, VELOCITY_P,
        OVER_CURRENT_PROTECTION_TIME, VELOCITY_I, TORQUE_ENABLE, ACCELERATION, GOAL_POSITION,
        GOAL_TIME, GOAL_VELOCITY, TORQUE_LIMIT, LOCK, PRESENT_POSITION, PRESENT_VELOCITY,
        PRESENT_LOAD, PRESENT_VOLTAGE, PRESENT_TEMPERATURE, STATUS, MOVING, PRESENT_CURRENT,
        MOVING_VELOCITY_THRESHOLD, DTS, VELOCITY_UNIT_FACTOR, HTS, MAXIMUM_VELOCITY_LIMIT,
        MAXIMUM_ACCELERATION, ACCELERATION_MULTIPLIER,
    )
}  # fmt: skip

EEPROM_END = 40
"""Addresses below this are EEPROM (persisted, saved only while ``Lock`` is 0); from here on, RAM."""
FACTORY_START = 80
"""The factory area (``Moving_Velocity_Threshold``..``Acceleration_Multiplier``) is persisted like EEPROM."""
TABLE_SIZE = 87
"""Bytes of the memory table (through the factory area) the emulator models."""


def is_persistent(address: int) -> bool:
    """True for EEPROM and factory-area addresses (kept across power cycles)."""
    return address < EEPROM_END or FACTORY_START <= address < TABLE_SIZE


def encode_sign_magnitude(value: int, sign_bit: int) -> int:
    """Signed integer -> raw register word with ``sign_bit`` as the direction bit."""
    magnitude = abs(int(value))
    if magnitude >= 1 << sign_bit:
        raise ValueError(f"|{value}| does not fit in {sign_bit} magnitude bits (max {(1 << sign_bit) - 1})")
    return magnitude | (1 << sign_bit) if value < 0 else magnitude


def decode_sign_magnitude(raw: int, sign_bit: int) -> int:
    """Raw register word -> signed integer; bits above ``sign_bit`` are ignored."""
    magnitude = raw & ((1 << sign_bit) - 1)
    return -magnitude if raw & (1 << sign_bit) else magnitude


def encode_value(register: Register, value: int) -> int:
    """Signed value -> unsigned raw value for ``register``; raises ``ValueError`` if out of range."""
    raw = encode_sign_magnitude(value, register.sign_bit) if register.sign_bit is not None else int(value)
    if not 0 <= raw < 1 << (8 * register.size):
        raise ValueError(f"{value} does not fit in {register.name} ({register.size} bytes)")
    return raw


def decode_value(register: Register, raw: int) -> int:
    return decode_sign_magnitude(raw, register.sign_bit) if register.sign_bit is not None else raw


def to_bytes(raw: int, size: int) -> list[int]:
    """Unsigned raw value -> little-endian bytes (protocol 0)."""
    return [(raw >> (8 * i)) & 0xFF for i in range(size)]


def from_bytes(data: bytes | bytearray | Sequence[int]) -> int:
    """Little-endian bytes -> unsigned raw value (protocol 0)."""
    return sum((byte & 0xFF) << (8 * i) for i, byte in enumerate(data))


def describe_error_bits(error: int) -> str:
    """Human-readable names of the error byte's set bits, e.g. ``'overload, overheat'``."""
    names = [name for bit, name in sorted(ERROR_BIT_NAMES.items()) if error & bit]
    unknown = error & ~sum(ERROR_BIT_NAMES)
    if unknown:
        names.append(f"unknown bits 0x{unknown:02x}")
    return ", ".join(names) or "none"


def checksum(body: bytes | bytearray | Sequence[int]) -> int:
    """Packet checksum over ID, LENGTH, INSTRUCTION/ERROR and parameters (header excluded)."""
    return ~sum(body) & 0xFF
