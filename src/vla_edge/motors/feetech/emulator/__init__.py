"""Emulated Feetech STS3215 servos behind a pseudo-terminal (standard library only).

* :mod:`.motion` - exact trapezoidal motion (acceleration ramp, speed cap, landing);
* :mod:`.telemetry` - load, current, temperature, voltage and the protections;
* :mod:`.servo` - one servo's control table: EEPROM and ``Lock``, power cycle, physics;
* :mod:`.chain` - protocol 0 over a chain of servos, with fault injection;
* :mod:`.arm` - :class:`ArmEmulator`: the chain on a pseudo-terminal, plus test hooks.

``from vla_edge.motors.feetech.emulator import ArmEmulator, ServoSnapshot`` is the usual entry.
"""

from __future__ import annotations

from vla_edge.motors.feetech.emulator.arm import ArmEmulator, ServoSnapshot
from vla_edge.motors.feetech.emulator.chain import FRAME_TIMEOUT_S, Reply, ServoChain
from vla_edge.motors.feetech.emulator.motion import trapezoid_duration
from vla_edge.motors.feetech.emulator.servo import EmulatedServo
from vla_edge.motors.feetech.emulator.telemetry import ServoPhysics

__all__ = [
    "FRAME_TIMEOUT_S",
    "ArmEmulator",
    "EmulatedServo",
    "Reply",
    "ServoChain",
    "ServoPhysics",
    "ServoSnapshot",
    "trapezoid_duration",
]
