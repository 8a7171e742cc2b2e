"""An emulated chain of STS3215 servos behind a pseudo-terminal, with test hooks.

Any serial client (the real feetech-servo-sdk through pyserial, LeRobot's
``FeetechMotorsBus``, ``vla-edge`` itself) opens :attr:`ArmEmulator.device_path` as it
would open ``/dev/ttyACM0``. The line starts at 1 Mbps; when a client sets another baud
rate on the terminal, only servos whose ``Baud_Rate`` matches it answer, as on a real bus.
"""

from __future__ import annotations

import array
import dataclasses
import fcntl
import logging
import os
import select
import termios
import threading
import time
import tty
from collections.abc import Callable
from dataclasses import dataclass
from typing import Self

from vla_edge.motors.feetech import tables as t
from vla_edge.motors.feetech.emulator.chain import ServoChain
from vla_edge.motors.feetech.emulator.telemetry import ServoPhysics

log = logging.getLogger(__name__)

_TCGETS2 = 0x802C542A
"""Linux ``ioctl`` returning ``struct termios2``, whose ``c_ispeed`` holds any baud rate pyserial set."""
_TERMIOS2_ISPEED = 9
"""Index of ``c_ispeed`` among the ``int`` fields of ``struct termios2``."""


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
    present_velocity: int = 0
    present_load: int = 0
    present_current: int = 0
    present_temperature: int = 0
    present_voltage: int = 0
    """0.1 V."""
    baudrate: int | None = None


class ArmEmulator(ServoChain):
    """``n`` STS3215 servos with ids ``first_id..first_id+n-1`` on one pseudo-terminal.

    ``speed_ticks_per_s`` is the servos' no-load top speed (``Goal_Velocity`` 0 means it;
    larger values are capped to it) and ``acceleration_ticks_per_s2`` the acceleration
    ``Acceleration`` 0 means. ``clock`` drives the physics: pass a stepped clock to make
    motion and heating deterministic (:meth:`snapshot` and every packet catch up with it).

    Test hooks: :meth:`snapshot`, :meth:`register`, :meth:`goal_positions`,
    :meth:`present_positions`, :meth:`torque_enabled`, :meth:`goal_writes`,
    :meth:`set_position`, :meth:`power_cycle`, :meth:`set_voltage`,
    :meth:`set_external_load`, :meth:`set_firmware_version`; fault injection:
    :meth:`corrupt_next_replies`, :meth:`drop_next_replies` (both per servo if asked),
    :meth:`delay_next_replies`,
    :meth:`set_offline`, :meth:`set_error_bits`, :meth:`unplug`. Without :meth:`start`,
    :meth:`~ServoChain.feed` serves packets directly (no terminal, no thread).
    """

    def __init__(
        self,
        n: int = 6,
        *,
        first_id: int = 1,
        initial_position: int = 2048,
        speed_ticks_per_s: float | None = None,
        acceleration_ticks_per_s2: float | None = None,
        model_number: int = t.STS3215_MODEL_NUMBER,
        physics: ServoPhysics | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        physics = physics or ServoPhysics()
        overrides = {}
        if speed_ticks_per_s is not None:
            overrides["max_speed"] = float(speed_ticks_per_s)
        if acceleration_ticks_per_s2 is not None:
            overrides["max_acceleration"] = float(acceleration_ticks_per_s2)
        if overrides:
            physics = dataclasses.replace(physics, **overrides)
        if physics.max_speed <= 0 or physics.max_acceleration <= 0:
            raise ValueError(f"speed {physics.max_speed} and acceleration {physics.max_acceleration} must be positive")
        super().__init__(
            n, first_id=first_id, initial_position=initial_position, model_number=model_number,
            physics=physics, clock=clock,
        )  # fmt: skip
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
        factory_rate = getattr(termios, "B1000000", None)  # Linux; elsewhere baud rates are not emulated
        if factory_rate is not None:
            attributes = termios.tcgetattr(slave)
            attributes[4] = attributes[5] = factory_rate  # the line starts at the servos' factory 1 Mbps
            termios.tcsetattr(slave, termios.TCSANOW, attributes)
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

    def line_baudrate(self) -> int | None:
        """The baud rate the client set on the terminal (``None`` if it cannot be read)."""
        slave = self._slave
        if slave is None:
            return None
        fields = array.array("i", [0] * 64)
        try:
            fcntl.ioctl(slave, _TCGETS2, fields)
        except OSError:  # not Linux: every servo hears everything
            return None
        return int(fields[_TERMIOS2_ISPEED]) or None

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
            baudrate = self.line_baudrate()
            replies = (self.process(data, baudrate) if data else []) + self.expire_partial(baudrate)
            for reply in replies:
                if reply.delay_s > 0:
                    time.sleep(reply.delay_s)
                try:
                    os.write(master, reply.data)
                except OSError as exc:  # client gone or not reading: a servo would just talk to nobody
                    log.debug("emulator reply dropped: %s", exc)

    # --- test hooks (thread-safe) ----------------------------------------------------------

    @property
    def ids(self) -> list[int]:
        with self._lock:
            return sorted(self._servos)

    def snapshot(self) -> dict[int, ServoSnapshot]:
        """Every servo's state, after the physics caught up with the clock."""
        with self._lock:
            self.advance()
            return {
                i: ServoSnapshot(
                    id=i,
                    goal_position=s.get(t.GOAL_POSITION),
                    present_position=s.get(t.PRESENT_POSITION),
                    torque_enabled=bool(s.get(t.TORQUE_ENABLE)),
                    moving=bool(s.get(t.MOVING)),
                    goal_velocity=s.get(t.GOAL_VELOCITY),
                    error_bits=s.error_bits(),
                    offline=s.offline,
                    present_velocity=s.get(t.PRESENT_VELOCITY),
                    present_load=s.get(t.PRESENT_LOAD),
                    present_current=s.get(t.PRESENT_CURRENT),
                    present_temperature=s.get(t.PRESENT_TEMPERATURE),
                    present_voltage=s.get(t.PRESENT_VOLTAGE),
                    baudrate=s.baudrate,
                )
                for i, s in sorted(self._servos.items())
            }

    def register(self, servo_id: int, register: t.Register) -> int:
        """One register's decoded value, after the physics caught up with the clock."""
        with self._lock:
            self.advance()
            return self._servos[servo_id].get(register)

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
            self.advance()
            servo = self._servos[servo_id]
            servo.shaft = float(ticks + servo.get(t.HOMING_OFFSET))
            servo.velocity = 0.0
            servo.refresh()

    def power_cycle(self, servo_id: int | None = None) -> None:
        """Switch the supply off and on: saved EEPROM stays, RAM returns to its power-on values.

        Unsaved EEPROM writes (made while ``Lock`` was 1) are lost, an id among them too.
        Injected error bits and offline flags are test settings and stay.
        """
        with self._lock:
            self.advance()
            targets = [self._servos[servo_id]] if servo_id is not None else list(self._servos.values())
            for servo in targets:
                old_id = servo.id
                servo.power_on()
                if servo.id != old_id:
                    self._rekey(servo, old_id)

    def set_voltage(self, volts: float, servo_id: int | None = None) -> None:
        """Change the supply voltage (all servos share one supply unless ``servo_id`` is given)."""
        with self._lock:
            self.advance()
            targets = [self._servos[servo_id]] if servo_id is not None else list(self._servos.values())
            for servo in targets:
                servo.telemetry.supply_voltage = float(volts)
                servo.refresh()

    def set_external_load(self, servo_id: int, load: float) -> None:
        """Make a joint hold against ``load`` (0.1 % of stall torque, signed), e.g. gravity or a stall."""
        with self._lock:
            self.advance()
            self._servos[servo_id].telemetry.external_load = float(load)

    def corrupt_next_replies(self, count: int = 1, servo_id: int | None = None) -> None:
        """Send the next ``count`` status packets (of one servo, or any) with a wrong checksum."""
        with self._lock:
            if servo_id is None:
                self._corrupt_replies = count
            else:
                self._corrupt_by_servo[servo_id] = count

    def drop_next_replies(self, count: int = 1, servo_id: int | None = None) -> None:
        """Swallow the next ``count`` status packets (of one servo, or any): executed, answer lost."""
        with self._lock:
            if servo_id is None:
                self._drop_replies = count
            else:
                self._drop_by_servo[servo_id] = count

    def delay_next_replies(self, seconds: float, count: int = 1) -> None:
        """Send the next ``count`` status packets ``seconds`` late: a reply that arrives after the
        client gave up waiting, and is still on the line when it asks the next question."""
        with self._lock:
            self._late_replies.extend([float(seconds)] * count)

    def set_firmware_version(self, servo_id: int, major: int, minor: int) -> None:
        """Pretend this servo runs another firmware (read-only on a real servo; LeRobot checks they agree)."""
        with self._lock:
            servo = self._servos[servo_id]
            servo.set(t.FIRMWARE_MAJOR, major)
            servo.set(t.FIRMWARE_MINOR, minor)
            servo.saved[t.FIRMWARE_MAJOR.address] = major
            servo.saved[t.FIRMWARE_MINOR.address] = minor

    def set_offline(self, servo_id: int, offline: bool = True) -> None:
        """An offline servo ignores every packet (unpowered or unplugged from the chain)."""
        with self._lock:
            self._servos[servo_id].offline = offline

    def set_error_bits(self, servo_id: int, bits: int) -> None:
        """Report ``bits`` (e.g. ``tables.ERR_OVERLOAD``) in every status packet of this servo."""
        with self._lock:
            self._servos[servo_id].injected_errors = bits & 0x7F
            self._servos[servo_id].refresh()
