"""Servo buses: a brand-neutral interface (:mod:`vla_edge.motors.base`) and one folder per brand.

Nothing here imports torch or LeRobot; :mod:`vla_edge.motors.feetech` needs only
``feetech-servo-sdk`` and ``pyserial`` (the ``actuator`` extra), imported lazily.
"""

from vla_edge.motors.base import ServoBus, ServoBusConfig

__all__ = ["ServoBus", "ServoBusConfig"]
