"""Fixtures for the servo-bus tests: a running emulator and a FeetechBus connected to it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from vla_edge.motors.base import ServoBusConfig
from vla_edge.motors.feetech.bus import FeetechBus
from vla_edge.motors.feetech.emulator import ArmEmulator

IDS = (1, 2, 3, 4, 5, 6)
TIMEOUT_MS = 500.0
"""Generous: the emulator shares a noisy machine; a real bus uses 50 ms."""


@pytest.fixture
def emulator() -> Iterator[ArmEmulator]:
    with ArmEmulator(6) as emu:
        yield emu


@pytest.fixture
def bus_config(emulator: ArmEmulator) -> ServoBusConfig:
    return ServoBusConfig(port=emulator.device_path, motor_ids=IDS, packet_timeout_ms=TIMEOUT_MS)


@pytest.fixture
def bus(bus_config: ServoBusConfig) -> Iterator[FeetechBus]:
    servo_bus = FeetechBus(bus_config)
    servo_bus.connect()
    yield servo_bus
    servo_bus.disconnect()
