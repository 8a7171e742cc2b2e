"""Feetech STS3215 servos: control table (:mod:`.tables`), the real-SDK bus (:mod:`.bus`) and an emulator.

``FeetechBus`` needs the ``actuator`` extra (feetech-servo-sdk, pyserial); the
emulator needs only the standard library. Both are imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vla_edge.motors.feetech.bus import FeetechBus
    from vla_edge.motors.feetech.emulator import ArmEmulator

__all__ = ["ArmEmulator", "FeetechBus"]


def __getattr__(name: str) -> Any:
    if name == "FeetechBus":
        from vla_edge.motors.feetech.bus import FeetechBus

        return FeetechBus
    if name == "ArmEmulator":
        from vla_edge.motors.feetech.emulator import ArmEmulator

        return ArmEmulator
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
