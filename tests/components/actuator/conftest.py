"""Fixtures for the actuator tests (helpers live in ``tests/support/actuator.py``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from support.actuator import Harness, actuator_config, finish, start

from vla_edge.motors.feetech.emulator.remote import RemoteArmEmulator


@pytest.fixture
def emulator() -> Iterator[RemoteArmEmulator]:
    """Six emulated servos in a process of their own (see ``vla_edge.motors.feetech.emulator.remote``)."""
    with RemoteArmEmulator(6) as emu:
        yield emu


@pytest.fixture
def make_actuator(emulator: RemoteArmEmulator) -> Iterator[Any]:
    started: list[Harness] = []

    def make(**overrides: Any) -> Harness:
        config = actuator_config(emulator.device_path, **overrides)
        harness = start(emulator, config)
        started.append(harness)
        return harness

    yield make
    for harness in started:
        if harness.thread.is_alive():
            finish(harness)
