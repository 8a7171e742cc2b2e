"""The servo-bus interface the actuator drives, independent of the servo brand.

Positions are raw encoder ticks, keyed by servo id. Converting to joint units (degrees,
calibration) is the caller's job, so a bus implementation only moves bytes. Telemetry
(:class:`ServoTelemetry`) is the exception: its figures are in physical units, because only
the bus knows its servos' register scales.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Self


@dataclass(frozen=True)
class ServoBusConfig:
    """Where the servos are and how to talk to them."""

    port: str
    """Serial device, e.g. ``/dev/ttyACM0`` or an emulator's pseudo-terminal."""
    motor_ids: tuple[int, ...]
    baudrate: int = 1_000_000
    packet_timeout_ms: float = 50.0
    """How long to wait for a status packet before the transaction counts as failed."""

    def __post_init__(self) -> None:
        if not self.motor_ids:
            raise ValueError("a servo bus needs at least one motor id")
        if len(set(self.motor_ids)) != len(self.motor_ids):
            raise ValueError(f"motor ids must be unique: {list(self.motor_ids)}")
        if self.packet_timeout_ms <= 0:
            raise ValueError("packet_timeout_ms must be > 0")


@dataclass(frozen=True)
class ServoTelemetry:
    """One servo's present state beyond its position, in physical units."""

    position: int
    """Encoder ticks, as :meth:`ServoBus.sync_read_positions` returns them."""
    velocity: int
    """Ticks per second, signed."""
    load_pct: float
    """Motor load in percent of the maximum torque, signed by direction."""
    voltage_v: float
    """Supply voltage at the servo."""
    temperature_c: float
    """Internal temperature."""
    moving: bool
    current_ma: float
    """Motor current in milliamperes."""
    error: int = 0
    """The error byte of this servo's status packet (0: no fault). The bits are the servo
    family's; for Feetech see :data:`vla_edge.motors.feetech.tables.ERROR_BIT_NAMES`."""


class ServoBus(abc.ABC):
    """A half-duplex bus of position-controlled servos.

    Every method raises :class:`vla_edge.errors.ServoBusError` on failure; after a
    failure that lost the port (``is_connected`` is then false) call :meth:`connect`
    again. A failure with the port still open and worth retrying is a
    :class:`~vla_edge.errors.ServoCommError`; servos that answered with error bits raise
    :class:`~vla_edge.errors.ServoFault`, which still carries the values read.
    """

    def __init__(self, config: ServoBusConfig) -> None:
        self.config = config

    @property
    def motor_ids(self) -> tuple[int, ...]:
        return self.config.motor_ids

    @property
    @abc.abstractmethod
    def is_connected(self) -> bool: ...

    @abc.abstractmethod
    def connect(self) -> None:
        """Open the port and check that every configured servo answers with the expected model."""

    @abc.abstractmethod
    def sync_read_positions(self) -> dict[int, int]:
        """Present position of every configured servo, in ticks.

        If status packets carry error bits, raises :class:`~vla_edge.errors.ServoFault` whose
        ``values`` are the positions (all of them were read) and ``faults`` the error bytes.
        """

    @abc.abstractmethod
    def sync_read_telemetry(self) -> dict[int, ServoTelemetry]:
        """Present state of every configured servo in one transaction.

        Error bits do not raise here: each reading carries its servo's error byte, so the
        caller gets the figures that explain a fault (temperature, voltage, load) with it.
        """

    @abc.abstractmethod
    def sync_write_goals(self, goals: Mapping[int, int]) -> None:
        """Goal position (ticks) for the given servos in one broadcast packet."""

    @abc.abstractmethod
    def set_torque(self, enabled: bool) -> None:
        """Enable or disable torque on every configured servo."""

    @abc.abstractmethod
    def disconnect(self) -> None:
        """Close the port (torque is left as it is); safe to call twice."""

    def __enter__(self) -> Self:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.disconnect()
