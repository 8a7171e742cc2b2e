"""Feetech STS3215 servo bus over the real ``feetech-servo-sdk`` (``scservo_sdk``) and pyserial.

Every SDK outcome is checked and becomes a :class:`~vla_edge.errors.ServoBusError` with
what failed, on which port and servo, and what to check:

* a non-success communication result (no reply, corrupt reply, port busy) raises
  :class:`~vla_edge.errors.ServoCommError` naming the SDK result; the port stays open and
  the caller may retry;
* a set error bit in a status packet raises :class:`~vla_edge.errors.ServoFault`, after
  the whole transaction completed, with the values that were read: an overheating servo
  still reports where it is;
* a serial failure (the USB adapter unplugged: ``SerialException``/``OSError``) closes
  the port, so ``is_connected`` turns false and the caller knows to
  :meth:`FeetechBus.connect` again.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import select
import termios
import threading
from collections.abc import Iterable, Iterator, Mapping

import scservo_sdk as scs
from serial import SerialException

from vla_edge.errors import ServoBusError, ServoCommError, ServoFault
from vla_edge.motors.base import ServoBus, ServoBusConfig, ServoTelemetry
from vla_edge.motors.feetech import tables
from vla_edge.motors.feetech.tables import Register

log = logging.getLogger(__name__)

_PORT_ERRORS = (SerialException, OSError, termios.error)
"""What a vanished or broken port raises: pyserial, the OS, or termios (``tcdrain``/``tcflush`` give EIO)."""

_RESULT_NAMES = {
    scs.COMM_PORT_BUSY: "COMM_PORT_BUSY",
    scs.COMM_TX_FAIL: "COMM_TX_FAIL",
    scs.COMM_RX_FAIL: "COMM_RX_FAIL",
    scs.COMM_TX_ERROR: "COMM_TX_ERROR",
    scs.COMM_RX_WAITING: "COMM_RX_WAITING",
    scs.COMM_RX_TIMEOUT: "COMM_RX_TIMEOUT",
    scs.COMM_RX_CORRUPT: "COMM_RX_CORRUPT",
    scs.COMM_NOT_AVAILABLE: "COMM_NOT_AVAILABLE",
}
_RESULT_HINTS = {
    scs.COMM_RX_TIMEOUT: "no status packet: check the servo power supply, the cable chain, the ids and the baud rate",
    scs.COMM_RX_CORRUPT: "bad status packet: electrical noise, a loose cable, or another process using the port",
    scs.COMM_PORT_BUSY: "the port is marked busy by an unfinished transaction",
}


TELEMETRY_REGISTERS = (
    tables.PRESENT_POSITION, tables.PRESENT_VELOCITY, tables.PRESENT_LOAD, tables.PRESENT_VOLTAGE,
    tables.PRESENT_TEMPERATURE, tables.MOVING, tables.PRESENT_CURRENT,
)  # fmt: skip
"""Read together by :meth:`FeetechBus.sync_read_telemetry`: one span, Present_Position..Present_Current."""
VOLTAGE_V_PER_UNIT = 0.1
"""STS3215 Present_Voltage unit."""
CURRENT_MA_PER_UNIT = 6.5
"""STS3215 Present_Current unit."""
LOAD_PCT_PER_UNIT = 0.1
"""STS3215 Present_Load unit (0.1 % of the maximum torque; sign-magnitude, direction bit 10)."""


READ_WAIT_S = 0.002
"""How long one read waits for a byte before the SDK's loop checks its packet timeout again."""


class TimedPortHandler(scs.PortHandler):  # type: ignore[misc]
    """The SDK's port handler with a configurable status-packet timeout.

    The stock timeout (about 34 ms plus transfer time) is shorter than a loaded USB
    serial adapter sometimes needs; LeRobot raises it to 50 ms for the same reason.
    """

    def __init__(self, port_name: str, timeout_ms: float) -> None:
        super().__init__(port_name)
        self.timeout_ms = timeout_ms

    def setPacketTimeout(self, packet_length: int) -> None:
        self.packet_start_time = self.getCurrentTime()
        self.packet_timeout = self.tx_time_per_byte * packet_length + self.timeout_ms

    def readPort(self, length: int) -> bytes:
        """The SDK waits for a status packet by polling a non-blocking read in a tight loop, which
        keeps a core busy for the whole wait (on a Raspberry Pi, a core the policy needs). Sleep in
        select() until a byte arrives instead, for at most READ_WAIT_S: no added latency, no spin."""
        select.select([self.ser.fileno()], [], [], READ_WAIT_S)
        data: bytes = self.ser.read(length)
        return data


class FeetechBus(ServoBus):
    """STS3215 servos (protocol 0) on one serial port. Thread-safe: one transaction at a time."""

    def __init__(self, config: ServoBusConfig, model_number: int = tables.STS3215_MODEL_NUMBER) -> None:
        super().__init__(config)
        if config.baudrate not in tables.BAUDRATE_CODES:
            raise ServoBusError(
                f"baud rate {config.baudrate} is not one the STS3215 supports: {sorted(tables.BAUDRATE_CODES)}"
            )
        self.model_number = model_number
        self._lock = threading.RLock()
        self._port: TimedPortHandler | None = None
        self._packets = scs.PacketHandler(tables.PROTOCOL_END)

    # --- lifecycle -------------------------------------------------------------------------

    @property
    def is_connected(self) -> bool:
        port = self._port
        return port is not None and bool(port.is_open)

    def connect(self) -> None:
        with self._lock:
            if self.is_connected:
                return
            name = self.config.port
            port = TimedPortHandler(name, self.config.packet_timeout_ms)
            try:
                if not port.setBaudRate(self.config.baudrate):
                    raise ServoBusError(f"the SDK refused baud rate {self.config.baudrate} on {name}")
                fcntl.flock(port.ser.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as exc:
                port.closePort()
                raise ServoBusError(f"{name} is already in use by another process; stop it first") from exc
            except _PORT_ERRORS as exc:
                raise ServoBusError(
                    f"cannot open servo port {name}: {exc}. Check that the arm's USB adapter is plugged in, "
                    "the path is right (ls /dev/ttyACM* /dev/ttyUSB*), and this user may open it (group dialout)."
                ) from exc
            self._port = port
            try:
                self._check_servos()
            except ServoBusError:
                self.disconnect()
                raise
            log.info("connected to %d servos on %s at %d baud", len(self.motor_ids), name, self.config.baudrate)

    def _check_servos(self) -> None:
        missing: list[int] = []
        wrong: dict[int, int] = {}
        for motor_id in self.motor_ids:
            try:
                model, error = self._ping_with_error(motor_id)
            except ServoBusError as exc:
                if not self.is_connected:
                    raise
                log.debug("servo %d: %s", motor_id, exc)
                missing.append(motor_id)
                continue
            if error:  # it answered: report the fault, but let diagnostics (vla-edge arm status) connect
                log.warning("servo %d reports %s", motor_id, tables.describe_error_bits(error))
            if model != self.model_number:
                wrong[motor_id] = model
        problems = []
        if missing:
            problems.append(f"servos {missing} did not answer (check power, cabling, ids and baud rate)")
        if wrong:
            found = ", ".join(f"id {i}: model {m}" for i, m in wrong.items())
            problems.append(f"wrong servo model ({found}; expected STS3215 = {self.model_number})")
        if problems:
            raise ServoBusError(
                f"servo check on {self.config.port} at {self.config.baudrate} baud failed: " + "; ".join(problems)
            )

    def disconnect(self) -> None:
        with self._lock:
            port, self._port = self._port, None
            if port is None or port.ser is None:
                return
            try:
                port.closePort()
            except _PORT_ERRORS as exc:
                log.debug("closing %s: %s", self.config.port, exc)

    # --- transactions ----------------------------------------------------------------------

    def ping(self, motor_id: int) -> int:
        """Ping one servo and return its model number."""
        with self._transaction(f"ping servo {motor_id}") as port:
            model, result, error = self._packets.ping(port, motor_id)
            self._check(result, f"ping servo {motor_id}")
        self._raise_faults(f"ping servo {motor_id}", {motor_id: error} if error else {}, {motor_id: int(model)})
        return int(model)

    def _ping_with_error(self, motor_id: int) -> tuple[int, int]:
        """Ping one servo: its model number and the error byte of its answer (not raised)."""
        with self._transaction(f"ping servo {motor_id}") as port:
            model, result, error = self._packets.ping(port, motor_id)
            self._check(result, f"ping servo {motor_id}")
            return int(model), int(error)

    def read(self, register: Register, motor_id: int) -> int:
        """Read one register of one servo (sign-magnitude values decoded).

        Error bits in the answer raise :class:`ServoFault` carrying the value that was read.
        """
        what = f"read {register.name} from servo {motor_id}"
        with self._transaction(what) as port:
            data, result, error = self._packets.readTxRx(port, motor_id, register.address, register.size)
            self._check(result, what)
            self._check_length(data, register.size, what, motor_id)
        value = tables.decode_value(register, tables.from_bytes(data))
        self._raise_faults(what, {motor_id: error} if error else {}, {motor_id: value})
        return value

    def read_registers(self, motor_id: int, registers: Iterable[Register]) -> tuple[dict[str, int], int]:
        """One READ of the span covering ``registers``; returns values by register name and the error byte.

        Unlike :meth:`read`, a set error bit does not raise: diagnostics (``vla-edge arm status``)
        want the readings and the error byte together. Communication failures still raise.
        """
        regs = list(registers)
        if not regs:
            return {}, 0
        first = min(r.address for r in regs)
        length = max(r.address + r.size for r in regs) - first
        what = f"read registers {first}..{first + length - 1} from servo {motor_id}"
        with self._transaction(what) as port:
            data, result, error = self._packets.readTxRx(port, motor_id, first, length)
            self._check(result, what)
            self._check_length(data, length, what, motor_id)
        values = {
            r.name: tables.decode_value(r, tables.from_bytes(data[r.address - first : r.address - first + r.size]))
            for r in regs
        }
        return values, int(error)

    def write(self, register: Register, motor_id: int, value: int) -> None:
        """Write one register of one servo and wait for its status packet."""
        data = tables.to_bytes(tables.encode_value(register, value), register.size)
        what = f"write {register.name}={value} to servo {motor_id}"
        with self._transaction(what) as port:
            result, error = self._packets.writeTxRx(port, motor_id, register.address, register.size, data)
            self._check(result, what)
        self._raise_faults(what, {motor_id: error} if error else {})

    def sync_read(self, register: Register, motor_ids: Iterable[int] | None = None) -> dict[int, int]:
        """One SYNC_READ packet; every listed servo answers with its own status packet, in order.

        Error bits raise :class:`ServoFault` only after every servo was read, with all values.
        """
        ids = list(self.motor_ids if motor_ids is None else motor_ids)
        what = f"sync read {register.name} from servos {ids}"
        data, errors = self._sync_read_span(register.address, register.size, ids, what)
        values = {i: tables.decode_value(register, tables.from_bytes(data[i])) for i in ids}
        self._raise_faults(what, errors, values)
        return values

    def _sync_read_span(
        self, address: int, length: int, ids: list[int], what: str
    ) -> tuple[dict[int, list[int]], dict[int, int]]:
        """Raw bytes of ``length`` registers from ``address`` for each servo, and the non-zero error bytes."""
        with self._transaction(what) as port:
            reader = scs.GroupSyncRead(port, self._packets, address, length)
            for motor_id in ids:
                reader.addParam(motor_id)
            self._check(reader.txPacket(), what)
            data: dict[int, list[int]] = {}
            errors: dict[int, int] = {}
            for motor_id in ids:
                raw, result, error = self._read_reply(port, motor_id)
                self._check(result, f"{what}: servo {motor_id}")
                self._check_length(raw, length, what, motor_id)
                data[motor_id] = raw
                if error:
                    errors[motor_id] = int(error)
            return data, errors

    def sync_write(self, register: Register, values: Mapping[int, int]) -> None:
        """One broadcast SYNC_WRITE packet (servos do not answer it)."""
        if not values:
            return
        what = f"sync write {register.name} to servos {sorted(values)}"
        payload = {i: tables.to_bytes(tables.encode_value(register, v), register.size) for i, v in values.items()}
        with self._transaction(what) as port:
            writer = scs.GroupSyncWrite(port, self._packets, register.address, register.size)
            for motor_id, data in payload.items():
                writer.addParam(motor_id, data)
            self._check(writer.txPacket(), what)

    # --- what the actuator uses ------------------------------------------------------------

    def sync_read_positions(self) -> dict[int, int]:
        return self.sync_read(tables.PRESENT_POSITION)

    def sync_read_telemetry(self) -> dict[int, ServoTelemetry]:
        """Position, velocity, load, voltage, temperature, moving flag and current of every servo
        in one SYNC_READ over Present_Position..Present_Current; error bytes are returned, not raised."""
        ids = list(self.motor_ids)
        first = min(r.address for r in TELEMETRY_REGISTERS)
        length = max(r.address + r.size for r in TELEMETRY_REGISTERS) - first
        data, errors = self._sync_read_span(first, length, ids, f"sync read telemetry from servos {ids}")
        readings = {}
        for motor_id in ids:
            raw = data[motor_id]
            value = {
                r.name: tables.decode_value(r, tables.from_bytes(raw[r.address - first : r.address - first + r.size]))
                for r in TELEMETRY_REGISTERS
            }
            readings[motor_id] = ServoTelemetry(
                position=value[tables.PRESENT_POSITION.name],
                velocity=value[tables.PRESENT_VELOCITY.name],
                load_pct=round(value[tables.PRESENT_LOAD.name] * LOAD_PCT_PER_UNIT, 1),
                voltage_v=round(value[tables.PRESENT_VOLTAGE.name] * VOLTAGE_V_PER_UNIT, 1),
                temperature_c=float(value[tables.PRESENT_TEMPERATURE.name]),
                moving=bool(value[tables.MOVING.name]),
                current_ma=value[tables.PRESENT_CURRENT.name] * CURRENT_MA_PER_UNIT,
                error=errors.get(motor_id, 0),
            )
        return readings

    def sync_write_goals(self, goals: Mapping[int, int]) -> None:
        unknown = set(goals) - set(self.motor_ids)
        if unknown:
            raise ValueError(f"goal for servo ids {sorted(unknown)} not on this bus {list(self.motor_ids)}")
        self.sync_write(tables.GOAL_POSITION, goals)

    def set_torque(self, enabled: bool) -> None:
        """Broadcast the new torque state, then confirm it servo by servo.

        Every servo is tried even if one fails, so a dead servo cannot keep the
        others powered during an emergency stop; the failures are raised together. A
        servo that acknowledges with error bits (overheating, say) did execute the write,
        so that counts as done: turning torque off must work precisely when servos fault.
        """
        value = 1 if enabled else 0
        failures = []
        try:
            self.sync_write(tables.TORQUE_ENABLE, {i: value for i in self.motor_ids})
        except ServoBusError as exc:
            if not self.is_connected:
                raise
            failures.append(str(exc))
        for motor_id in self.motor_ids:
            try:
                self.write(tables.TORQUE_ENABLE, motor_id, value)
            except ServoFault as exc:
                log.debug("torque %s acknowledged with error bits: %s", "on" if enabled else "off", exc)
            except ServoBusError as exc:
                if not self.is_connected:
                    raise
                failures.append(str(exc))
        if failures:
            raise ServoBusError(f"torque {'on' if enabled else 'off'} incomplete: " + "; ".join(failures))

    # --- plumbing --------------------------------------------------------------------------

    @contextlib.contextmanager
    def _transaction(self, what: str) -> Iterator[TimedPortHandler]:
        with self._lock:
            port = self._port
            if port is None or not port.is_open:
                raise ServoBusError(f"{what}: servo port {self.config.port} is not connected")
            try:
                # The SDK's clearPort flushes output only: a reply that came after an earlier
                # transaction gave up would otherwise be read as the answer to this one.
                port.ser.reset_input_buffer()
                yield port
            except _PORT_ERRORS as exc:
                self.disconnect()
                raise ServoBusError(
                    f"{what}: servo port {self.config.port} failed ({exc}); it was closed. "
                    "Check the USB cable; the port is reopened on the next connect()."
                ) from exc
            finally:
                port.is_using = False

    def _check(self, result: int, what: str) -> None:
        """Raise :class:`ServoCommError` for a failed transaction (error bits are checked by the
        caller, after it has the values, see :meth:`_raise_faults`)."""
        if result != scs.COMM_SUCCESS:
            self._drain()
            name = _RESULT_NAMES.get(result, f"result {result}")
            hint = _RESULT_HINTS.get(result, self._packets.getTxRxResult(result))
            raise ServoCommError(f"{what} on {self.config.port}: {name}, {hint}", result=name)

    def _read_reply(self, port: TimedPortHandler, motor_id: int) -> tuple[list[int], int, int]:
        """The next status packet of ``motor_id`` (others' packets skipped, as the SDK's readRx does),
        with all of its parameters: the SDK's readRx cuts a longer reply to the length asked for,
        which would hide a stale answer to another request."""
        while True:
            packet, result = self._packets.rxPacket(port)
            if result != scs.COMM_SUCCESS:
                return [], result, 0
            if packet[scs.PKT_ID] == motor_id:
                params = packet[scs.PKT_PARAMETER0 : scs.PKT_PARAMETER0 + packet[scs.PKT_LENGTH] - 2]
                return list(params), result, int(packet[scs.PKT_ERROR])

    def _check_length(self, data: list[int], length: int, what: str, motor_id: int) -> None:
        """A well-formed reply of the wrong size answers another request (one that timed out
        earlier): drop what is left of it and raise a retryable corrupt-reply error."""
        if len(data) != length:
            self._drain()
            raise ServoCommError(
                f"{what}: servo {motor_id} sent {len(data)} byte(s) where {length} were asked for "
                "(a late reply to an earlier request, or another program on the port)",
                result=_RESULT_NAMES[scs.COMM_RX_CORRUPT],
            )

    @staticmethod
    def _raise_faults(what: str, errors: Mapping[int, int], values: Mapping[int, int] | None = None) -> None:
        """Raise :class:`ServoFault` when any servo answered with error bits, keeping what was read."""
        if errors:
            raise ServoFault(
                f"{what}: "
                + "; ".join(
                    f"servo {i} reports {tables.describe_error_bits(e)} (error byte 0x{e:02x})"
                    for i, e in sorted(errors.items())
                ),
                faults=errors,
                values=values,
            )

    def _drain(self) -> None:
        """Drop late or partial replies so they cannot be mistaken for the next answer."""
        port = self._port
        if port is not None and port.ser is not None:
            port.ser.reset_input_buffer()
