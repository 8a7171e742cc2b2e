"""A chain of emulated STS3215 servos speaking Feetech protocol 0 (no transport).

:class:`ServoChain` turns received bytes into status packets: PING (also broadcast, as
LeRobot's ``broadcast_ping`` expects), READ, WRITE, REG_WRITE, ACTION, SYNC_READ and
SYNC_WRITE, with checksummed replies that carry the error byte. Packets with a bad
checksum are ignored and counted, as a servo does; a servo whose ``Baud_Rate`` does not
match the line's rate does not hear the packet at all. ``Response_Status_Level`` 0
silences every reply except to PING and READ; ``Return_Delay_Time`` (2 µs units) delays a
servo's reply. Time for the physics comes from an injectable clock.

Fault injection: replies can be dropped or sent with a broken checksum (all servos, or
one), servos can go offline, and error bits can be forced. The pseudo-terminal that
carries all this is :class:`~vla_edge.motors.feetech.emulator.arm.ArmEmulator`.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from vla_edge.motors.feetech import tables as t
from vla_edge.motors.feetech.emulator.servo import EmulatedServo
from vla_edge.motors.feetech.emulator.telemetry import ServoPhysics

log = logging.getLogger(__name__)

FRAME_TIMEOUT_S = 0.05
"""An incomplete packet older than this is abandoned (servos resynchronise on silence)."""
RETURN_DELAY_UNIT_S = 2e-6
"""``Return_Delay_Time`` counts 2 µs (LeRobot: the factory value 250 is 500 µs)."""


@dataclass(frozen=True)
class Reply:
    """One status packet and how long its servo waits before sending it."""

    servo_id: int
    data: bytes
    delay_s: float = 0.0


class ServoChain:
    """``n`` STS3215 servos with ids ``first_id..first_id+n-1`` on one half-duplex line."""

    def __init__(
        self,
        n: int = 6,
        *,
        first_id: int = 1,
        initial_position: int = 2048,
        model_number: int = t.STS3215_MODEL_NUMBER,
        physics: ServoPhysics | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 1 <= n <= t.MAX_ID or not 0 <= first_id <= t.MAX_ID - n + 1:
            raise ValueError(f"cannot emulate {n} servos starting at id {first_id}")
        self.physics = physics or ServoPhysics()
        self._servos = {
            i: EmulatedServo(i, initial_position, model_number, self.physics) for i in range(first_id, first_id + n)
        }
        self._lock = threading.RLock()
        self._clock = clock
        self._last_advance = clock()
        self._buffer = bytearray()
        self._partial_since: float | None = None
        self._goal_log: collections.deque[tuple[float, int, int]] = collections.deque(maxlen=100_000)
        self._corrupt_replies = 0
        self._drop_replies = 0
        self._corrupt_by_servo: dict[int, int] = {}
        self._drop_by_servo: dict[int, int] = {}
        self._late_replies: list[float] = []
        """Extra seconds before each of the next status packets (a servo or USB adapter that stalls)."""
        self.replies_dropped = 0
        self.bad_checksums = 0
        self.dropped_bytes = 0
        self.packets_served = 0

    # --- receiving -----------------------------------------------------------------------

    def feed(self, data: bytes) -> list[bytes]:
        """Process received bytes; return the status packets to send. Public for protocol tests.

        Every servo hears the bytes whatever its ``Baud_Rate`` (there is no line rate here);
        :meth:`process` takes the rate into account.
        """
        return [reply.data for reply in self.process(data)]

    def process(self, data: bytes, baudrate: int | None = None) -> list[Reply]:
        """Advance the physics, then execute every complete packet in ``data`` heard at ``baudrate``."""
        with self._lock:
            self.advance()
            self._buffer.extend(data)
            replies: list[Reply] = []
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
                replies.extend(self._execute(servo_id, frame[4], frame[5:-1], baudrate))
            if not buf:
                self._partial_since = None
            elif self._partial_since is None:
                self._partial_since = time.monotonic()
            return [self._maybe_delay(self._maybe_corrupt(reply)) for reply in self._maybe_drop(replies)]

    def expire_partial(self, baudrate: int | None = None) -> list[Reply]:
        """Abandon a packet that stayed incomplete too long (e.g. a corrupted length byte)."""
        with self._lock:
            since = self._partial_since
            if since is None or time.monotonic() - since <= FRAME_TIMEOUT_S:
                return []
            self.dropped_bytes += 1
            del self._buffer[:1]
            self._partial_since = None
            return self.process(b"", baudrate)

    def advance(self) -> None:
        """Let the servos' physics catch up with the clock."""
        with self._lock:
            now = self._clock()
            elapsed, self._last_advance = now - self._last_advance, now
            for servo in self._servos.values():
                servo.advance(elapsed) if elapsed > 0 else servo.refresh()

    # --- executing -----------------------------------------------------------------------

    def _execute(self, target: int, instruction: int, params: bytes, baudrate: int | None) -> list[Reply]:
        broadcast = target == t.BROADCAST_ID
        if instruction == t.INST_SYNC_READ:
            if len(params) < 2:
                return []
            address, length = params[0], params[1]
            return [self._read_reply(s, address, length) for s in self._listening(params[2:], baudrate)]
        if instruction == t.INST_SYNC_WRITE:
            if len(params) < 2 or params[1] < 1 or (len(params) - 2) % (params[1] + 1):
                return []
            address, length, body = params[0], params[1], params[2:]
            for offset in range(0, len(body), length + 1):
                for servo in self._listening(body[offset : offset + 1], baudrate):
                    self._write(servo, address, body[offset + 1 : offset + 1 + length])
            return []
        servos = self._listening(list(self._servos) if broadcast else [target], baudrate)
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
            replier_id = servo.id  # a servo answers a WRITE of its ID under its old id
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
                replies.append(self._status(servo, b"", 0 if ok else t.ERR_INSTRUCTION, replier_id))
        return replies

    def _listening(self, ids: Iterable[int], baudrate: int | None) -> list[EmulatedServo]:
        """The servos among ``ids`` that are powered and listen at the line's rate."""
        found = []
        for i in ids:
            servo = self._servos.get(i)
            if servo is None or servo.offline:
                continue
            if baudrate is not None and servo.baudrate != baudrate:
                continue  # at another rate the packet is noise to this servo
            found.append(servo)
        return found

    def _read_reply(self, servo: EmulatedServo, address: int, length: int) -> Reply:
        data = servo.read(address, length)
        if data is None:
            return self._status(servo, b"", t.ERR_INSTRUCTION)
        return self._status(servo, data)

    def _write(self, servo: EmulatedServo, address: int, data: bytes) -> bool:
        old_id = servo.id
        if not servo.write(address, data):
            return False
        goal = t.GOAL_POSITION
        if address <= goal.address and address + len(data) >= goal.address + goal.size:
            self._goal_log.append((time.monotonic(), old_id, servo.get(goal)))
        if servo.id != old_id:
            self._rekey(servo, old_id)
        return True

    def _rekey(self, servo: EmulatedServo, old_id: int) -> None:
        """File a servo under its new id; refuse (keep the old id) if that would collide."""
        new_id = servo.id
        if new_id in self._servos or new_id > t.MAX_ID:
            log.warning("servo %d: id %d is taken or invalid; keeping id %d", old_id, new_id, old_id)
            servo.set(t.ID, old_id)
            return
        self._servos[new_id] = self._servos.pop(old_id)

    def _status(self, servo: EmulatedServo, data: bytes, error: int = 0, servo_id: int | None = None) -> Reply:
        sender = servo.id if servo_id is None else servo_id
        body = bytes([sender, len(data) + 2, (servo.error_bits() | error) & 0x7F]) + data
        delay = servo.get(t.RETURN_DELAY_TIME) * RETURN_DELAY_UNIT_S
        return Reply(sender, b"\xff\xff" + body + bytes([t.checksum(body)]), delay)

    # --- faults --------------------------------------------------------------------------

    def _take(self, counts: dict[int, int], servo_id: int) -> bool:
        left = counts.get(servo_id, 0)
        if left <= 0:
            return False
        counts[servo_id] = left - 1
        return True

    def _maybe_drop(self, replies: list[Reply]) -> list[Reply]:
        kept = []
        for reply in replies:
            if self._take(self._drop_by_servo, reply.servo_id):
                self.replies_dropped += 1
            elif self._drop_replies > 0:
                self._drop_replies -= 1
                self.replies_dropped += 1
            else:
                kept.append(reply)
        return kept

    def _maybe_corrupt(self, reply: Reply) -> Reply:
        if self._take(self._corrupt_by_servo, reply.servo_id):
            pass
        elif self._corrupt_replies > 0:
            self._corrupt_replies -= 1
        else:
            return reply
        data = reply.data[:-1] + bytes([reply.data[-1] ^ 0xFF])
        return Reply(reply.servo_id, data, reply.delay_s)

    def _maybe_delay(self, reply: Reply) -> Reply:
        if not self._late_replies:
            return reply
        return Reply(reply.servo_id, reply.data, reply.delay_s + self._late_replies.pop(0))
