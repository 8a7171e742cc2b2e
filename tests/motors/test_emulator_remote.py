"""The emulator in a child process (``vla-edge emulate-arm --control``) answers like the one in-process."""

from __future__ import annotations

import pytest

from vla_edge.errors import VlaEdgeError
from vla_edge.motors.base import ServoBusConfig
from vla_edge.motors.feetech import tables as t
from vla_edge.motors.feetech.bus import FeetechBus
from vla_edge.motors.feetech.emulator.arm import ServoSnapshot
from vla_edge.motors.feetech.emulator.remote import RemoteArmEmulator, decode, encode


def test_values_cross_the_pipe_as_they_left() -> None:
    snapshot = ServoSnapshot(id=1, goal_position=10, present_position=11, torque_enabled=True, moving=False,
                             goal_velocity=0, error_bits=0, offline=False, baudrate=1_000_000)
    value = {1: snapshot, 2: [(0.5, 2, 2048)], 3: True}
    assert decode(encode(value)) == value


def test_hooks_drive_the_servos_a_real_bus_talks_to() -> None:
    with RemoteArmEmulator(3) as emulator:
        bus = FeetechBus(ServoBusConfig(port=emulator.device_path, motor_ids=(1, 2, 3), packet_timeout_ms=500))
        bus.connect()
        try:
            emulator.set_position(2, 1000)
            assert bus.sync_read_positions() == emulator.present_positions() == {1: 2048, 2: 1000, 3: 2048}
            bus.sync_write_goals({1: 2100})
            assert [(servo, ticks) for _, servo, ticks in emulator.goal_writes()] == [(1, 2100)]
            emulator.set_error_bits(3, t.ERR_OVERHEAT)
            assert emulator.snapshot()[3].error_bits == t.ERR_OVERHEAT
        finally:
            bus.disconnect()
        with pytest.raises(VlaEdgeError, match="KeyError"):
            emulator.set_position(9, 0)  # no servo 9: the child's error comes back, the child keeps serving
        assert emulator.goal_positions()[1] == 2100
        with pytest.raises(AttributeError):
            emulator.no_such_hook()
    assert emulator.process.returncode == 0, "closing the control pipe stops the child cleanly"
