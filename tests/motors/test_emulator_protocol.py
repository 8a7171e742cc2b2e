"""The real feetech-servo-sdk, over pyserial and a real pseudo-terminal, against the emulator."""

from __future__ import annotations

import os
import select
import time
from collections.abc import Iterator

import pytest
import scservo_sdk as scs
from support import wait_for

from vla_edge.motors.feetech import tables as t
from vla_edge.motors.feetech.bus import TimedPortHandler
from vla_edge.motors.feetech.emulator import ArmEmulator

IDS = (1, 2, 3, 4, 5, 6)
TIMEOUT_MS = 500.0


@pytest.fixture
def sdk(emulator: ArmEmulator) -> Iterator[tuple[scs.PortHandler, scs.protocol_packet_handler]]:
    port = TimedPortHandler(emulator.device_path, TIMEOUT_MS)
    assert port.setBaudRate(1_000_000)
    yield port, scs.PacketHandler(0)
    port.closePort()


def test_ping_returns_sts3215_model_number(sdk) -> None:
    port, ph = sdk
    for motor_id in IDS:
        model, result, error = ph.ping(port, motor_id)
        assert (model, result, error) == (777, scs.COMM_SUCCESS, 0)


def test_absent_servo_times_out(sdk) -> None:
    port, ph = sdk
    _, result, _ = ph.ping(port, 42)
    assert result == scs.COMM_RX_TIMEOUT


@pytest.mark.parametrize(
    ("register", "value"),
    [
        (t.RETURN_DELAY_TIME, 0),
        (t.MIN_POSITION_LIMIT, 100),
        (t.MAX_POSITION_LIMIT, 4000),
        (t.OPERATING_MODE, 0),
        (t.TORQUE_ENABLE, 1),
        (t.ACCELERATION, 254),
        (t.GOAL_POSITION, 1234),
        (t.GOAL_VELOCITY, 2000),
        (t.LOCK, 0),
        (t.P_COEFFICIENT, 16),
    ],
    ids=lambda v: v.name if isinstance(v, t.Register) else str(v),
)
def test_write_then_read_each_register(sdk, register: t.Register, value: int) -> None:
    port, ph = sdk
    data = t.to_bytes(t.encode_value(register, value), register.size)
    result, error = ph.writeTxRx(port, 3, register.address, register.size, data)
    assert (result, error) == (scs.COMM_SUCCESS, 0)
    raw, result, error = ph.readTxRx(port, 3, register.address, register.size)
    assert (result, error) == (scs.COMM_SUCCESS, 0)
    assert t.decode_value(register, t.from_bytes(raw)) == value


def test_negative_homing_offset_is_sign_magnitude_on_the_wire(sdk, emulator: ArmEmulator) -> None:
    port, ph = sdk
    result, error = ph.write2ByteTxRx(port, 2, t.HOMING_OFFSET.address, t.encode_value(t.HOMING_OFFSET, -100))
    assert (result, error) == (scs.COMM_SUCCESS, 0)
    raw, result, _ = ph.read2ByteTxRx(port, 2, t.HOMING_OFFSET.address)
    assert raw == 0x800 | 100
    # Present = actual - offset: the servo at 2048 now reads 2148.
    position, result, _ = ph.read2ByteTxRx(port, 2, t.PRESENT_POSITION.address)
    assert (position, result) == (2148, scs.COMM_SUCCESS)


def test_read_only_registers_report_state_and_ignore_writes(sdk) -> None:
    port, ph = sdk
    assert ph.read2ByteTxRx(port, 1, t.MODEL_NUMBER.address)[:2] == (777, scs.COMM_SUCCESS)
    assert ph.read1ByteTxRx(port, 1, t.PRESENT_VOLTAGE.address)[0] > 0
    assert ph.read1ByteTxRx(port, 1, t.PRESENT_TEMPERATURE.address)[0] > 0
    assert ph.read1ByteTxRx(port, 1, t.MOVING.address)[0] == 0
    assert ph.read2ByteTxRx(port, 1, t.PRESENT_CURRENT.address)[:2] == (0, scs.COMM_SUCCESS)
    ph.write2ByteTxRx(port, 1, t.PRESENT_POSITION.address, 10)
    assert ph.read2ByteTxRx(port, 1, t.PRESENT_POSITION.address)[0] == 2048
    ph.write2ByteTxRx(port, 1, t.MODEL_NUMBER.address, 1)
    assert ph.read2ByteTxRx(port, 1, t.MODEL_NUMBER.address)[0] == 777


def test_read_past_the_table_sets_the_instruction_error_bit(sdk) -> None:
    port, ph = sdk
    _, result, error = ph.readTxRx(port, 1, 200, 2)
    assert result == scs.COMM_SUCCESS
    assert error & t.ERR_INSTRUCTION


def test_sync_write_and_sync_read_six_servos(sdk, emulator: ArmEmulator) -> None:
    port, ph = sdk
    goals = {motor_id: 1000 + 300 * motor_id for motor_id in IDS}
    writer = scs.GroupSyncWrite(port, ph, t.GOAL_POSITION.address, 2)
    for motor_id, goal in goals.items():
        assert writer.addParam(motor_id, t.to_bytes(goal, 2))
    assert writer.txPacket() == scs.COMM_SUCCESS
    wait_for(lambda: emulator.goal_positions() == goals)

    reader = scs.GroupSyncRead(port, ph, t.GOAL_POSITION.address, 2)
    for motor_id in IDS:
        reader.addParam(motor_id)
    assert reader.txRxPacket() == scs.COMM_SUCCESS
    assert {i: reader.getData(i, t.GOAL_POSITION.address, 2) for i in IDS} == goals


def test_servos_move_toward_goal_only_with_torque(sdk, emulator: ArmEmulator) -> None:
    port, ph = sdk
    ph.write2ByteTxRx(port, 1, t.GOAL_POSITION.address, 3000)
    assert emulator.present_positions()[1] == 2048  # torque off: the goal is stored, nothing moves
    ph.write1ByteTxRx(port, 1, t.TORQUE_ENABLE.address, 1)
    wait_for(lambda: ph.read2ByteTxRx(port, 1, t.PRESENT_POSITION.address)[0] == 3000)
    assert ph.read1ByteTxRx(port, 1, t.MOVING.address)[0] == 0


def test_motion_is_gradual() -> None:
    with ArmEmulator(1, speed_ticks_per_s=1000.0) as slow:
        slow_port = TimedPortHandler(slow.device_path, TIMEOUT_MS)
        ph = scs.PacketHandler(0)
        assert slow_port.setBaudRate(1_000_000)
        try:
            ph.write1ByteTxRx(slow_port, 1, t.TORQUE_ENABLE.address, 1)
            ph.write2ByteTxRx(slow_port, 1, t.GOAL_POSITION.address, 4000)
            seen = set()
            wait_for(lambda: seen.add(ph.read2ByteTxRx(slow_port, 1, t.PRESENT_POSITION.address)[0]) or 4000 in seen)
            assert any(2048 < p < 4000 for p in seen), seen  # it passed through intermediate positions
        finally:
            slow_port.closePort()


def test_reg_write_applies_on_action(sdk, emulator: ArmEmulator) -> None:
    port, ph = sdk
    result, error = ph.regWriteTxRx(port, 5, t.GOAL_POSITION.address, 2, t.to_bytes(777, 2))
    assert (result, error) == (scs.COMM_SUCCESS, 0)
    assert emulator.goal_positions()[5] == 2048
    ph.action(port, scs.BROADCAST_ID)
    wait_for(lambda: emulator.goal_positions()[5] == 777)


def _raw_packet(servo_id: int, instruction: int, params: bytes = b"") -> bytes:
    body = bytes([servo_id, len(params) + 2, instruction]) + params
    return b"\xff\xff" + body + bytes([t.checksum(body)])


def _read_available(fd: int, wanted: int, timeout: float = 5.0) -> bytes:
    data = b""
    deadline = time.monotonic() + timeout
    while len(data) < wanted and time.monotonic() < deadline:
        if select.select([fd], [], [], 0.05)[0]:
            data += os.read(fd, 256)
    return data


def test_bad_checksum_is_ignored_and_counted(emulator: ArmEmulator) -> None:
    fd = os.open(emulator.device_path, os.O_RDWR | os.O_NOCTTY)
    try:
        good = _raw_packet(1, t.INST_WRITE, bytes([t.GOAL_POSITION.address, 0x10, 0x00]))
        bad = good[:-1] + bytes([good[-1] ^ 0x01])
        ping = _raw_packet(2, t.INST_PING)
        os.write(fd, bad + ping)
        reply = _read_available(fd, 6)
        # Only the ping is answered: FF FF 02 02 00 FB.
        assert reply == b"\xff\xff\x02\x02\x00" + bytes([t.checksum([2, 2, 0])])
        assert emulator.bad_checksums == 1
        assert emulator.goal_positions()[1] == 2048
        assert emulator.goal_writes() == []
    finally:
        os.close(fd)


def test_garbage_between_packets_is_skipped(emulator: ArmEmulator) -> None:
    fd = os.open(emulator.device_path, os.O_RDWR | os.O_NOCTTY)
    try:
        os.write(fd, b"\x00\x13\x37\xff" + _raw_packet(4, t.INST_PING))
        reply = _read_available(fd, 6)
        assert reply[:3] == b"\xff\xff\x04"
        assert emulator.dropped_bytes >= 3
    finally:
        os.close(fd)


def test_corrupted_status_packet_is_detected_by_the_sdk(sdk, emulator: ArmEmulator) -> None:
    port, ph = sdk
    emulator.corrupt_next_replies(1)
    _, result, _ = ph.read2ByteTxRx(port, 1, t.PRESENT_POSITION.address)
    assert result == scs.COMM_RX_CORRUPT
    assert ph.read2ByteTxRx(port, 1, t.PRESENT_POSITION.address)[1] == scs.COMM_SUCCESS


def test_truncated_packet_is_abandoned_even_under_steady_traffic(emulator: ArmEmulator) -> None:
    fd = os.open(emulator.device_path, os.O_RDWR | os.O_NOCTTY)
    try:
        os.write(fd, b"\xff\xff\x01\xc8\x03")  # claims 200 more bytes that never come
        ping = _raw_packet(3, t.INST_PING)
        reply = b""
        deadline = time.monotonic() + 10
        while b"\xff\xff\x03\x02\x00" not in reply:
            assert time.monotonic() < deadline, "the emulator never resynchronised"
            os.write(fd, ping)
            reply += _read_available(fd, 6, timeout=0.02)
        assert emulator.dropped_bytes >= 1
    finally:
        os.close(fd)


def test_present_velocity_is_sign_magnitude_on_the_wire(sdk) -> None:
    port, ph = sdk
    ph.write1ByteTxRx(port, 1, t.TORQUE_ENABLE.address, 1)
    ph.write2ByteTxRx(port, 1, t.GOAL_POSITION.address, 100)  # downward
    raw = wait_for(lambda: ph.read2ByteTxRx(port, 1, t.PRESENT_VELOCITY.address)[0] & 0x8000 and
                   ph.read2ByteTxRx(port, 1, t.PRESENT_VELOCITY.address)[0])  # fmt: skip
    assert t.decode_value(t.PRESENT_VELOCITY, int(raw)) < 0


def test_a_dropped_reply_of_one_servo_times_out_only_that_servo(sdk, emulator: ArmEmulator) -> None:
    port, ph = sdk
    emulator.drop_next_replies(1, servo_id=4)
    assert ph.ping(port, 4)[1] == scs.COMM_RX_TIMEOUT
    assert ph.ping(port, 3)[1] == scs.COMM_SUCCESS
    assert ph.ping(port, 4)[1] == scs.COMM_SUCCESS


def test_cli_defaults_describe_an_sts3215_at_12_volts() -> None:
    from vla_edge.motors.feetech.emulator_cli import build_parser

    args = build_parser().parse_args([])
    assert (round(args.speed), args.acceleration, args.voltage) == (3075, 25_400, 12.0)
