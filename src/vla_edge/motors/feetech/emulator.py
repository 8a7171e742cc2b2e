"""An emulated chain of STS3215 servos behind a pseudo-terminal.

Any serial client (the real feetech-servo-sdk through pyserial, ``vla-edge`` itself)
opens :attr:`ArmEmulator.device_path` as it would open ``/dev/ttyACM0``. The emulator
speaks protocol 0 on the real control-table addresses: PING, READ, WRITE, REG_WRITE,
ACTION, SYNC_READ and SYNC_WRITE, with checksummed status packets that carry the
error byte. Packets with a bad checksum are ignored (and counted), as a servo does.

With torque enabled a servo moves toward its goal at a bounded speed (``Goal_Velocity``
when set, else ``speed_ticks_per_s``), so the present position lags the goal as on
hardware. Test hooks: :meth:`ArmEmulator.snapshot`, :meth:`ArmEmulator.goal_writes`,
:meth:`ArmEmulator.set_position`, and the fault injections
:meth:`ArmEmulator.corrupt_next_replies`, :meth:`ArmEmulator.drop_next_replies`,
:meth:`ArmEmulator.set_offline`,
:meth:`ArmEmulator.set_error_bits`, :meth:`ArmEmulator.unplug`. Only the standard library is used.
"""

from __future__ import annotations

import collections
import logging
import os
import select
import termios
import threading
import time
import tty
from dataclasses import dataclass
from typing import Self

from vla_edge.motors.feetech import tables as t

log = logging.getLogger(__name__)

FRAME_TIMEOUT_S = 0.05
"""An incomplete packet older than this is abandoned (servos resynchronise on silence)."""
_READ_ONLY = frozenset(
    address
    for reg in t.STS3215_REGISTERS.values()
    if not reg.writable
    for address in range(reg.address, reg.address + reg.size)
)


@dataclass(frozen=True)
class ServoSnapshot:
    """One servo's state as tests see it (values decoded, positions in ticks)."""

    id: int
    goal_position: int
    present_position: int
    torque_enabled: bool
    moving: bool
    goal_velocity: int
    error_bits: int
    offline: bool


class _Servo:
    def __init__(self, servo_id: int, position: int, speed: float, model_number: int) -> None:
        self.mem = bytearray(t.TABLE_SIZE)
        self.speed = speed
        self.actual = float(position)
        self.velocity = 0.0
        self.error_bits = 0
        self.offline = False
        self.pending: tuple[int, bytes] | None = None
        for reg, value in (
            (t.FIRMWARE_MAJOR, 3), (t.FIRMWARE_MINOR, 10), (t.MODEL_NUMBER, model_number),
            (t.ID, servo_id), (t.BAUD_RATE, 0), (t.RETURN_DELAY_TIME, 0), (t.RESPONSE_STATUS_LEVEL, 1),
            (t.MIN_POSITION_LIMIT, 0), (t.MAX_POSITION_LIMIT, t.MAX_POSITION), (t.MAX_TEMPERATURE_LIMIT, 70),
            (t.MAX_VOLTAGE_LIMIT, 140), (t.MIN_VOLTAGE_LIMIT, 40), (t.MAX_TORQUE_LIMIT, 1000),
            (t.P_COEFFICIENT, 32), (t.D_COEFFICIENT, 32), (t.TORQUE_LIMIT, 1000), (t.LOCK, 1),
            (t.GOAL_POSITION, position), (t.PRESENT_VOLTAGE, 120), (t.PRESENT_TEMPERATURE, 30),
        ):  # fmt: skip
            self.set(reg, value)
        self.refresh()

    @property
    def id(self) -> int:
        return self.mem[t.ID.address]

    def get(self, reg: t.Register) -> int:
        return t.decode_value(reg, t.from_bytes(self.mem[reg.address : reg.address + reg.size]))

    def set(self, reg: t.Register, value: int) -> None:
        self.mem[reg.address : reg.address + reg.size] = bytes(t.to_bytes(t.encode_value(reg, value), reg.size))

    def target(self) -> float:
        goal = self.get(t.GOAL_POSITION)
        low, high = self.get(t.MIN_POSITION_LIMIT), self.get(t.MAX_POSITION_LIMIT)
        if low < high:
            goal = min(max(goal, low), high)
        return float(goal + self.get(t.HOMING_OFFSET))

    def advance(self, dt: float) -> None:
        if not self.get(t.TORQUE_ENABLE):
            self.velocity = 0.0
            return
        error = self.target() - self.actual
        speed = abs(self.get(t.GOAL_VELOCITY)) or self.speed
        step = speed * dt
        if abs(error) <= step:
            self.actual += error
            self.velocity = error / dt if dt > 0 else 0.0
        else:
            self.actual += step if error > 0 else -step
            self.velocity = speed if error > 0 else -speed

    def refresh(self) -> None:
        present = round(self.actual - self.get(t.HOMING_OFFSET)) % t.RESOLUTION
        self.set(t.PRESENT_POSITION, present)
        self.set(t.PRESENT_VELOCITY, int(max(-32767, min(32767, round(self.velocity)))))
        moving = bool(self.get(t.TORQUE_ENABLE)) and abs(self.target() - self.actual) >= 1.0
        self.set(t.MOVING, int(moving))

    def read(self, address: int, length: int) -> bytes | None:
        if length < 1 or address + length > len(self.mem):
            return None
        return bytes(self.mem[address : address + length])

    def write(self, address: int, data: bytes) -> bool:
        if not data or address + len(data) > len(self.mem):
            return False
        for offset, byte in enumerate(data):
            if address + offset not in _READ_ONLY:
                self.mem[address + offset] = byte
        return True


class ArmEmulator:
    """``n`` STS3215 servos with ids ``first_id..first_id+n-1`` on one pseudo-terminal."""

    def __init__(
        self,
        n: int = 6,
        *,
        first_id: int = 1,
        initial_position: int = 2048,
        speed_ticks_per_s: float = 3000.0,
        model_number: int = t.STS3215_MODEL_NUMBER,
    ) -> None:
        if not 1 <= n <= t.MAX_ID or not 0 <= first_id <= t.MAX_ID - n + 1:
            raise ValueError(f"cannot emulate {n} servos starting at id {first_id}")
        self._servos = {
            i: _Servo(i, initial_position, speed_ticks_per_s, model_number) for i in range(first_id, first_id + n)
        }
        self._lock = threading.RLock()
        self._buffer = bytearray()
        self._partial_since: float | None = None
        self._last_advance = time.monotonic()
        self._goal_log: collections.deque[tuple[float, int, int]] = collections.deque(maxlen=100_000)
        self._corrupt_replies = 0
        self._drop_replies = 0
        self.replies_dropped = 0
        self.bad_checksums = 0
        self.dropped_bytes = 0
        self.packets_served = 0
        self._master: int | None = None
        self._slave: int | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.device_path = ""

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> Self:
        if self._master is not None or self._slave is not None:
            raise RuntimeError("emulator already started (after unplug(), stop() it before starting again)")
        master, slave = os.openpty()
        tty.setraw(slave, termios.TCSANOW)
        os.set_blocking(master, False)
        self._master, self._slave = master, slave
        self.device_path = os.ttyname(slave)
        self._stop.clear()
        self._thread = threading.Thread(target=self._serve, name="arm-emulator", daemon=True)
        self._thread.start()
        log.info("emulating %d STS3215 servos on %s", len(self._servos), self.device_path)
        return self

    def unplug(self) -> None:
        """Simulate pulling the USB cable: clients get EIO and the device node disappears.

        The terminal number stays reserved until :meth:`stop`, so no other program's
        new terminal can take the same path while a test still points at it.
        """
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stop.set()
            thread.join(timeout=5)
        if self._master is not None:
            os.close(self._master)
            self._master = None

    def stop(self) -> None:
        """Stop serving and close the terminal: clients then see the port vanish (EIO)."""
        self.unplug()
        if self._slave is not None:
            os.close(self._slave)
            self._slave = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- test hooks (thread-safe) ----------------------------------------------------------

    @property
    def ids(self) -> list[int]:
        with self._lock:
            return sorted(self._servos)

    def snapshot(self) -> dict[int, ServoSnapshot]:
        with self._lock:
            self._advance()
            return {
                i: ServoSnapshot(
                    id=i,
                    goal_position=s.get(t.GOAL_POSITION),
                    present_position=s.get(t.PRESENT_POSITION),
                    torque_enabled=bool(s.get(t.TORQUE_ENABLE)),
                    moving=bool(s.get(t.MOVING)),
                    goal_velocity=s.get(t.GOAL_VELOCITY),
                    error_bits=s.error_bits,
                    offline=s.offline,
                )
                for i, s in sorted(self._servos.items())
            }

    def goal_positions(self) -> dict[int, int]:
        return {i: s.goal_position for i, s in self.snapshot().items()}

    def present_positions(self) -> dict[int, int]:
        return {i: s.present_position for i, s in self.snapshot().items()}

    def torque_enabled(self) -> dict[int, bool]:
        return {i: s.torque_enabled for i, s in self.snapshot().items()}

    def goal_writes(self) -> list[tuple[float, int, int]]:
        """Every Goal_Position write so far: ``(time.monotonic(), servo id, goal ticks)``."""
        with self._lock:
            return list(self._goal_log)

    def set_position(self, servo_id: int, ticks: int) -> None:
        """Move a servo by hand (as if pushed while limp); with torque on it returns to its goal."""
        with self._lock:
            servo = self._servos[servo_id]
            servo.actual = float(ticks + servo.get(t.HOMING_OFFSET))
            servo.refresh()

    def corrupt_next_replies(self, count: int = 1) -> None:
        """Send the next ``count`` status packets with a wrong checksum."""
        with self._lock:
            self._corrupt_replies = count

    def drop_next_replies(self, count: int = 1) -> None:
        """Swallow the next ``count`` status packets (the request was executed, the answer is lost)."""
        with self._lock:
            self._drop_replies = count

    def set_offline(self, servo_id: int, offline: bool = True) -> None:
        """An offline servo ignores every packet (unpowered or unplugged from the chain)."""
        with self._lock:
            self._servos[servo_id].offline = offline

    def set_error_bits(self, servo_id: int, bits: int) -> None:
        """Report ``bits`` (e.g. ``tables.ERR_OVERLOAD``) in every status packet of this servo."""
        with self._lock:
            self._servos[servo_id].error_bits = bits & 0x7F

    # --- serving ---------------------------------------------------------------------------

    def _serve(self) -> None:
        master = self._master
        assert master is not None
        while not self._stop.is_set():
            try:
                readable, _, _ = select.select([master], [], [], 0.01)
                data = os.read(master, 4096) if readable else b""
            except BlockingIOError:
                continue
            except OSError as exc:  # EIO while no client has the port open: keep waiting
                log.debug("emulator read: %s", exc)
                self._stop.wait(0.01)
                continue
            with self._lock:
                self._advance()
                replies = (self.feed(data) if data else []) + self._expire_partial()
            for reply in replies:
                try:
                    os.write(master, reply)
                except OSError as exc:  # client gone or not reading: a servo would just talk to nobody
                    log.debug("emulator reply dropped: %s", exc)

    def feed(self, data: bytes) -> list[bytes]:
        """Process received bytes; return the status packets to send. Public for protocol tests."""
        with self._lock:
            self._buffer.extend(data)
            replies: list[bytes] = []
            buf = self._buffer
            while True:
                start = buf.find(b"\xff\xff")
                if start < 0:
                    keep = 1 if buf[-1:] == b"\xff" else 0
                    self.dropped_bytes += len(buf) - keep
                    del buf[: len(buf) - keep]
                    break
                if start:
                    self.dropped_bytes += start
                    del buf[:start]
                if len(buf) < 4:
                    break
                servo_id, length = buf[2], buf[3]
                if servo_id == 0xFF or length < 2:
                    self.dropped_bytes += 1
                    del buf[:1]
                    continue
                if len(buf) < length + 4:
                    break
                frame = bytes(buf[: length + 4])
                del buf[: length + 4]
                self._partial_since = None
                if t.checksum(frame[2:-1]) != frame[-1]:
                    self.bad_checksums += 1
                    log.debug("ignored packet with bad checksum: %s", frame.hex(" "))
                    continue
                self.packets_served += 1
                replies.extend(self._execute(servo_id, frame[4], frame[5:-1]))
            if not buf:
                self._partial_since = None
            elif self._partial_since is None:
                self._partial_since = time.monotonic()
            return [self._maybe_corrupt(reply) for reply in self._maybe_drop(replies)]

    def _expire_partial(self) -> list[bytes]:
        """Abandon a packet that stayed incomplete too long (e.g. a corrupted length byte)."""
        since = self._partial_since
        if since is None or time.monotonic() - since <= FRAME_TIMEOUT_S:
            return []
        self.dropped_bytes += 1
        del self._buffer[:1]
        self._partial_since = None
        return self.feed(b"")

    def _advance(self) -> None:
        now = time.monotonic()
        elapsed, self._last_advance = now - self._last_advance, now
        for servo in self._servos.values():
            if elapsed > 0:
                servo.advance(elapsed)  # constant-speed motion: one step of any length is exact
            servo.refresh()

    def _execute(self, target: int, instruction: int, params: bytes) -> list[bytes]:
        broadcast = target == t.BROADCAST_ID
        if instruction == t.INST_SYNC_READ:
            if len(params) < 2:
                return []
            address, length = params[0], params[1]
            return [self._read_reply(s, address, length) for s in self._online(params[2:])]
        if instruction == t.INST_SYNC_WRITE:
            if len(params) < 2 or params[1] < 1 or (len(params) - 2) % (params[1] + 1):
                return []
            address, length, body = params[0], params[1], params[2:]
            for offset in range(0, len(body), length + 1):
                for servo in self._online(body[offset : offset + 1]):
                    self._write(servo, address, body[offset + 1 : offset + 1 + length])
            return []
        servos = self._online(list(self._servos) if broadcast else [target])
        replies = []
        for servo in servos:
            if instruction == t.INST_PING:
                replies.append(self._status(servo, b""))
                continue
            if instruction == t.INST_READ:
                if not broadcast and len(params) == 2:
                    replies.append(self._read_reply(servo, params[0], params[1]))
                continue
            ok = True
            if instruction == t.INST_WRITE:
                ok = len(params) >= 2 and self._write(servo, params[0], params[1:])
            elif instruction == t.INST_REG_WRITE:
                ok = len(params) >= 2
                servo.pending = (params[0], bytes(params[1:])) if ok else None
            elif instruction == t.INST_ACTION:
                if servo.pending is not None:
                    self._write(servo, *servo.pending)
                    servo.pending = None
            else:
                ok = False
            if not broadcast and servo.get(t.RESPONSE_STATUS_LEVEL):
                replies.append(self._status(servo, b"", 0 if ok else t.ERR_INSTRUCTION))
        return replies

    def _online(self, ids: bytes | list[int]) -> list[_Servo]:
        return [self._servos[i] for i in ids if i in self._servos and not self._servos[i].offline]

    def _read_reply(self, servo: _Servo, address: int, length: int) -> bytes:
        data = servo.read(address, length)
        if data is None:
            return self._status(servo, b"", t.ERR_INSTRUCTION)
        return self._status(servo, data)

    def _write(self, servo: _Servo, address: int, data: bytes) -> bool:
        old_id = servo.id
        if not servo.write(address, data):
            return False
        goal = t.GOAL_POSITION
        if address <= goal.address and address + len(data) >= goal.address + goal.size:
            self._goal_log.append((time.monotonic(), old_id, servo.get(goal)))
        new_id = servo.id
        if new_id != old_id:
            if new_id in self._servos or new_id > t.MAX_ID:
                servo.set(t.ID, old_id)
            else:
                self._servos[new_id] = self._servos.pop(old_id)
        servo.refresh()
        return True

    def _status(self, servo: _Servo, data: bytes, error: int = 0) -> bytes:
        body = bytes([servo.id, len(data) + 2, (servo.error_bits | error) & 0x7F]) + data
        return b"\xff\xff" + body + bytes([t.checksum(body)])

    def _maybe_drop(self, replies: list[bytes]) -> list[bytes]:
        kept = []
        for reply in replies:
            if self._drop_replies > 0:
                self._drop_replies -= 1
                self.replies_dropped += 1
            else:
                kept.append(reply)
        return kept

    def _maybe_corrupt(self, reply: bytes) -> bytes:
        if self._corrupt_replies <= 0:
            return reply
        self._corrupt_replies -= 1
        return reply[:-1] + bytes([reply[-1] ^ 0xFF])
