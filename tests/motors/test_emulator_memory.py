"""EEPROM, Lock, power cycle, id and baud-rate changes of the emulated STS3215.

Lock semantics follow Feetech's own libraries: ``Lock = 0`` opens EEPROM *saving*, so a
write with ``Lock`` at 1 acts now and is gone after a power cycle.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import scservo_sdk as scs

from vla_edge.motors.feetech import tables as t
from vla_edge.motors.feetech.bus import TimedPortHandler
from vla_edge.motors.feetech.emulator import ArmEmulator

TIMEOUT_MS = 500.0


def packet(servo_id: int, instruction: int, params: bytes = b"") -> bytes:
    body = bytes([servo_id, len(params) + 2, instruction]) + params
    return b"\xff\xff" + body + bytes([t.checksum(body)])


def write(emulator: ArmEmulator, servo_id: int, register: t.Register, value: int) -> list[bytes]:
    data = bytes(t.to_bytes(t.encode_value(register, value), register.size))
    return emulator.feed(packet(servo_id, t.INST_WRITE, bytes([register.address]) + data))


def read(emulator: ArmEmulator, servo_id: int, register: t.Register) -> int:
    (reply,) = emulator.feed(packet(servo_id, t.INST_READ, bytes([register.address, register.size])))
    assert reply[2] == servo_id and reply[4] == 0, reply.hex(" ")
    return t.decode_value(register, t.from_bytes(reply[5:-1]))


@pytest.fixture
def arm() -> ArmEmulator:
    return ArmEmulator(3)  # feed() only: no terminal, no thread


def test_power_on_state(arm: ArmEmulator) -> None:
    assert read(arm, 1, t.LOCK) == 1
    assert read(arm, 1, t.TORQUE_ENABLE) == 0
    assert read(arm, 1, t.TORQUE_LIMIT) == read(arm, 1, t.MAX_TORQUE_LIMIT) == 1000
    assert read(arm, 1, t.GOAL_POSITION) == read(arm, 1, t.PRESENT_POSITION) == 2048
    assert (read(arm, 1, t.FIRMWARE_MAJOR), read(arm, 1, t.FIRMWARE_MINOR)) == (3, 10)
    assert read(arm, 2, t.MODEL_NUMBER) == t.STS3215_MODEL_NUMBER
    assert read(arm, 2, t.BAUD_RATE) == 0  # 1 Mbps


def test_eeprom_write_while_locked_acts_but_is_lost_at_power_cycle(arm: ArmEmulator) -> None:
    write(arm, 1, t.HOMING_OFFSET, -500)
    write(arm, 1, t.MAX_POSITION_LIMIT, 3000)
    assert read(arm, 1, t.HOMING_OFFSET) == -500  # in effect now...
    assert read(arm, 1, t.PRESENT_POSITION) == 2548
    arm.power_cycle()
    assert read(arm, 1, t.HOMING_OFFSET) == 0  # ...but never saved
    assert read(arm, 1, t.MAX_POSITION_LIMIT) == t.MAX_POSITION
    assert read(arm, 1, t.PRESENT_POSITION) == 2048


def test_eeprom_write_with_lock_open_survives_power_cycle(arm: ArmEmulator) -> None:
    write(arm, 2, t.TORQUE_ENABLE, 0)  # LeRobot's disable_torque: torque off, then Lock 0
    write(arm, 2, t.LOCK, 0)
    write(arm, 2, t.HOMING_OFFSET, 321)
    write(arm, 2, t.MIN_POSITION_LIMIT, 700)
    write(arm, 2, t.MAXIMUM_ACCELERATION, 254)  # factory area: saved like EEPROM
    write(arm, 2, t.LOCK, 1)
    write(arm, 2, t.MIN_POSITION_LIMIT, 800)  # after locking again: not saved
    arm.power_cycle(2)
    assert read(arm, 2, t.HOMING_OFFSET) == 321
    assert read(arm, 2, t.MIN_POSITION_LIMIT) == 700
    assert read(arm, 2, t.MAXIMUM_ACCELERATION) == 254
    assert read(arm, 2, t.LOCK) == 1
    assert read(arm, 1, t.MIN_POSITION_LIMIT) == 0  # other servos untouched


def test_power_cycle_resets_ram_and_holds_the_present_position(arm: ArmEmulator) -> None:
    write(arm, 3, t.TORQUE_ENABLE, 1)
    write(arm, 3, t.ACCELERATION, 50)
    write(arm, 3, t.GOAL_VELOCITY, 900)
    write(arm, 3, t.TORQUE_LIMIT, 300)
    write(arm, 3, t.LOCK, 0)
    arm.set_position(3, 1111)
    write(arm, 3, t.GOAL_POSITION, 1111)
    arm.power_cycle(3)
    assert read(arm, 3, t.TORQUE_ENABLE) == 0
    assert read(arm, 3, t.ACCELERATION) == 0
    assert read(arm, 3, t.GOAL_VELOCITY) == 0
    assert read(arm, 3, t.TORQUE_LIMIT) == 1000
    assert read(arm, 3, t.LOCK) == 1
    assert read(arm, 3, t.GOAL_POSITION) == read(arm, 3, t.PRESENT_POSITION) == 1111


def test_read_only_registers_ignore_writes_even_unlocked(arm: ArmEmulator) -> None:
    write(arm, 1, t.LOCK, 0)
    write(arm, 1, t.MODEL_NUMBER, 1)
    write(arm, 1, t.FIRMWARE_MAJOR, 9)
    arm.power_cycle()
    assert read(arm, 1, t.MODEL_NUMBER) == t.STS3215_MODEL_NUMBER
    assert read(arm, 1, t.FIRMWARE_MAJOR) == 3


def test_id_change_answers_under_the_old_id_and_needs_lock_open_to_persist(arm: ArmEmulator) -> None:
    (reply,) = write(arm, 3, t.ID, 9)
    assert reply[2] == 3  # the SDK matches the status packet to the id it addressed
    assert arm.ids == [1, 2, 9]
    assert read(arm, 9, t.ID) == 9
    arm.power_cycle()
    assert arm.ids == [1, 2, 3]  # written while locked: the old id is back

    write(arm, 3, t.LOCK, 0)
    write(arm, 3, t.ID, 9)
    arm.power_cycle()
    assert arm.ids == [1, 2, 9]


def test_id_taken_by_another_servo_is_refused(arm: ArmEmulator) -> None:
    write(arm, 1, t.ID, 2)
    assert arm.ids == [1, 2, 3]
    assert read(arm, 1, t.ID) == 1


def test_response_status_level_zero_answers_only_ping_and_read(arm: ArmEmulator) -> None:
    write(arm, 1, t.RESPONSE_STATUS_LEVEL, 0)
    assert write(arm, 1, t.GOAL_POSITION, 1000) == []
    assert read(arm, 1, t.GOAL_POSITION) == 1000
    assert len(arm.feed(packet(1, t.INST_PING))) == 1


def test_broadcast_ping_is_answered_by_every_servo(arm: ArmEmulator) -> None:
    replies = arm.feed(packet(t.BROADCAST_ID, t.INST_PING))
    assert [reply[2] for reply in replies] == [1, 2, 3]


def test_unknown_instruction_sets_the_instruction_error_bit(arm: ArmEmulator) -> None:
    (reply,) = arm.feed(packet(2, 0x7A))
    assert reply[4] & t.ERR_INSTRUCTION


# --- baud rate, over the pseudo-terminal with the real SDK ----------------------------------


@pytest.fixture
def port(emulator: ArmEmulator) -> Iterator[TimedPortHandler]:
    handler = TimedPortHandler(emulator.device_path, TIMEOUT_MS)
    assert handler.setBaudRate(1_000_000)
    yield handler
    handler.closePort()


def test_baud_rate_write_moves_the_servo_to_the_new_rate(emulator: ArmEmulator, port: TimedPortHandler) -> None:
    ph = scs.PacketHandler(0)
    code = t.BAUDRATE_CODES[115_200]
    # The status packet still comes at the old rate; then the servo listens at the new one.
    assert ph.write1ByteTxRx(port, 2, t.BAUD_RATE.address, code) == (scs.COMM_SUCCESS, 0)
    assert ph.ping(port, 2)[1] == scs.COMM_RX_TIMEOUT
    assert ph.ping(port, 1)[1] == scs.COMM_SUCCESS
    assert emulator.snapshot()[2].baudrate == 115_200

    assert port.setBaudRate(115_200)
    assert ph.ping(port, 2)[:2] == (t.STS3215_MODEL_NUMBER, scs.COMM_SUCCESS)
    assert ph.ping(port, 1)[1] == scs.COMM_RX_TIMEOUT

    emulator.power_cycle()  # written with Lock at 1: the factory rate is back
    assert ph.ping(port, 2)[1] == scs.COMM_RX_TIMEOUT
    assert port.setBaudRate(1_000_000)
    assert ph.ping(port, 2)[1] == scs.COMM_SUCCESS


def test_unsaved_and_saved_baud_rates(emulator: ArmEmulator, port: TimedPortHandler) -> None:
    ph = scs.PacketHandler(0)
    assert ph.write1ByteTxRx(port, 4, t.LOCK.address, 0) == (scs.COMM_SUCCESS, 0)
    assert ph.write1ByteTxRx(port, 4, t.BAUD_RATE.address, t.BAUDRATE_CODES[500_000]) == (scs.COMM_SUCCESS, 0)
    emulator.power_cycle()
    assert ph.ping(port, 4)[1] == scs.COMM_RX_TIMEOUT
    assert port.setBaudRate(500_000)
    assert ph.ping(port, 4)[1] == scs.COMM_SUCCESS
