"""Load, current, temperature, voltage, protections and reply faults of the emulated STS3215.

Time is an injected clock stepped by the test; registers travel as protocol-0 packets
through ``feed()``.
"""

from __future__ import annotations

import pytest

from vla_edge.motors.feetech import tables as t
from vla_edge.motors.feetech.emulator import ArmEmulator


class SteppedClock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


def packet(servo_id: int, instruction: int, params: bytes = b"") -> bytes:
    body = bytes([servo_id, len(params) + 2, instruction]) + params
    return b"\xff\xff" + body + bytes([t.checksum(body)])


def write(emulator: ArmEmulator, servo_id: int, register: t.Register, value: int) -> None:
    data = bytes(t.to_bytes(t.encode_value(register, value), register.size))
    emulator.feed(packet(servo_id, t.INST_WRITE, bytes([register.address]) + data))


def read_raw(emulator: ArmEmulator, servo_id: int, register: t.Register) -> tuple[int, int]:
    """The raw register value and the error byte of the status packet."""
    (reply,) = emulator.feed(packet(servo_id, t.INST_READ, bytes([register.address, register.size])))
    return t.from_bytes(reply[5:-1]), reply[4]


@pytest.fixture
def clock() -> SteppedClock:
    return SteppedClock()


@pytest.fixture
def arm(clock: SteppedClock) -> ArmEmulator:
    return ArmEmulator(6, clock=clock)


def hold(arm: ArmEmulator, clock: SteppedClock, servo_id: int, seconds: float, step: float = 1.0) -> list[int]:
    """Let time pass in ``step`` increments; returns the temperatures read along the way."""
    temperatures = []
    for _ in range(round(seconds / step)):
        clock.now += step
        temperatures.append(arm.register(servo_id, t.PRESENT_TEMPERATURE))
    return temperatures


def test_idle_readings(arm: ArmEmulator) -> None:
    state = arm.snapshot()[1]
    assert (state.present_load, state.present_current, state.present_voltage) == (0, 0, 120)
    assert state.present_temperature == 30 and state.error_bits == 0


def test_load_is_sign_magnitude_on_bit_10_and_drives_the_current(arm: ArmEmulator) -> None:
    write(arm, 1, t.TORQUE_ENABLE, 1)
    arm.set_external_load(1, -300)  # 30 % of stall torque, pushing the other way
    raw, _ = read_raw(arm, 1, t.PRESENT_LOAD)
    assert raw == 0x400 | 300
    current, _ = read_raw(arm, 1, t.PRESENT_CURRENT)
    amps = current * 0.0065  # 6.5 mA units
    assert amps == pytest.approx(0.03 + 0.3 * 2.7, abs=0.01)  # holding current + 30 % of the stall current


def test_torque_limit_caps_the_load(arm: ArmEmulator) -> None:
    write(arm, 2, t.TORQUE_ENABLE, 1)
    write(arm, 2, t.TORQUE_LIMIT, 400)
    arm.set_external_load(2, 700)
    assert arm.snapshot()[2].present_load == 400


def test_moving_servo_reports_load_opposite_to_braking(arm: ArmEmulator, clock: SteppedClock) -> None:
    write(arm, 1, t.TORQUE_ENABLE, 1)
    write(arm, 1, t.GOAL_POSITION, 4000)
    clock.now += 0.05  # still ramping up: effort along the motion
    assert arm.snapshot()[1].present_load > 0
    clock.now += 0.68  # braking near the goal: effort against the motion
    state = arm.snapshot()[1]
    assert state.moving and state.present_velocity > 0 and state.present_load < 0


def test_temperature_rises_under_sustained_load_then_overheat_switches_torque_off(
    arm: ArmEmulator, clock: SteppedClock
) -> None:
    write(arm, 1, t.TORQUE_ENABLE, 1)
    arm.set_external_load(1, 700)  # 70 %: under the 80 % overload threshold, enough to overheat
    temperatures = hold(arm, clock, 1, seconds=300)
    assert temperatures == sorted(temperatures)  # it only warms
    assert 55 <= temperatures[-1] < 70  # about 30 + 44 × (1 - e^-300/240)
    assert arm.snapshot()[1].error_bits == 0
    for _ in range(900):  # keep holding until the protection acts
        clock.now += 1.0
        if not arm.snapshot()[1].torque_enabled:
            break
    state = arm.snapshot()[1]
    assert not state.torque_enabled  # Unloading_Condition 44 includes overheat
    assert state.present_temperature >= 70 and state.present_load == 0
    _, error = read_raw(arm, 1, t.PRESENT_TEMPERATURE)
    assert error & t.ERR_OVERHEAT  # in every status packet
    assert read_raw(arm, 1, t.STATUS)[0] & t.ERR_OVERHEAT
    cooled = hold(arm, clock, 1, seconds=900)
    assert cooled == sorted(cooled, reverse=True) and cooled[-1] <= 35  # cools toward idle, torque off
    assert arm.snapshot()[1].error_bits == 0  # the bit cleared once it read 5 °C under the limit


def test_max_temperature_limit_is_the_register(arm: ArmEmulator, clock: SteppedClock) -> None:
    write(arm, 3, t.MAX_TEMPERATURE_LIMIT, 40)
    write(arm, 3, t.UNLOADING_CONDITION, 0)  # report only: torque stays on
    write(arm, 3, t.TORQUE_ENABLE, 1)
    arm.set_external_load(3, 600)
    hold(arm, clock, 3, seconds=300, step=5.0)
    state = arm.snapshot()[3]
    assert state.present_temperature > 40 and state.error_bits & t.ERR_OVERHEAT and state.torque_enabled


def test_overload_protection_trips_after_protection_time(arm: ArmEmulator, clock: SteppedClock) -> None:
    write(arm, 4, t.TORQUE_ENABLE, 1)
    arm.set_external_load(4, 900)  # above Overload_Torque 80 %
    clock.now += 1.5  # Protection_Time 200 × 10 ms = 2 s
    assert arm.snapshot()[4].error_bits == 0
    clock.now += 0.6
    state = arm.snapshot()[4]
    assert state.error_bits & t.ERR_OVERLOAD and not state.torque_enabled and state.present_load == 0
    write(arm, 4, t.TORQUE_ENABLE, 1)  # switching torque on again clears the latched bit...
    assert arm.snapshot()[4].error_bits == 0
    clock.now += 2.1
    assert arm.snapshot()[4].error_bits & t.ERR_OVERLOAD  # ...until it trips again


def test_lerobot_gripper_protection_current_trips_overcurrent(arm: ArmEmulator, clock: SteppedClock) -> None:
    write(arm, 6, t.LOCK, 0)
    write(arm, 6, t.PROTECTION_CURRENT, 250)  # what LeRobot's SO follower writes for the gripper
    write(arm, 6, t.TORQUE_ENABLE, 1)
    arm.set_external_load(6, 700)  # about 1.9 A: above 250 × 6.5 mA, under the overload threshold
    clock.now += 2.1
    state = arm.snapshot()[6]
    assert state.error_bits & t.ERR_OVERCURRENT and not state.torque_enabled
    assert arm.snapshot()[5].error_bits == 0  # the default 500 (3.25 A) would not have tripped


def test_voltage_outside_the_limits_sets_the_voltage_bit(arm: ArmEmulator) -> None:
    write(arm, 1, t.TORQUE_ENABLE, 1)
    arm.set_voltage(3.5)
    raw, error = read_raw(arm, 1, t.PRESENT_VOLTAGE)
    assert raw == 35 and error & t.ERR_VOLTAGE
    assert arm.snapshot()[1].torque_enabled  # voltage is not in Unloading_Condition 44: reported only
    arm.set_voltage(14.5)
    assert read_raw(arm, 2, t.PRESENT_VOLTAGE)[1] & t.ERR_VOLTAGE
    write(arm, 2, t.MAX_VOLTAGE_LIMIT, 150)
    assert read_raw(arm, 2, t.PRESENT_VOLTAGE)[1] == 0
    arm.set_voltage(12.0)
    assert all(state.error_bits == 0 for state in arm.snapshot().values())


def test_voltage_of_one_servo(arm: ArmEmulator) -> None:
    arm.set_voltage(7.4, servo_id=5)
    assert {i: s.present_voltage for i, s in arm.snapshot().items()} == {1: 120, 2: 120, 3: 120, 4: 120, 5: 74, 6: 120}


def test_injected_error_bits_are_reported_not_acted_on(arm: ArmEmulator, clock: SteppedClock) -> None:
    write(arm, 2, t.TORQUE_ENABLE, 1)
    arm.set_error_bits(2, t.ERR_OVERLOAD)
    clock.now += 1.0
    assert read_raw(arm, 2, t.PRESENT_POSITION)[1] == t.ERR_OVERLOAD
    assert arm.snapshot()[2].torque_enabled


def test_replies_of_one_servo_can_be_dropped(arm: ArmEmulator) -> None:
    sync_read = packet(t.BROADCAST_ID, t.INST_SYNC_READ, bytes([t.PRESENT_POSITION.address, 2, 1, 2, 3, 4, 5, 6]))
    arm.drop_next_replies(1, servo_id=3)
    assert [reply[2] for reply in arm.feed(sync_read)] == [1, 2, 4, 5, 6]
    assert [reply[2] for reply in arm.feed(sync_read)] == [1, 2, 3, 4, 5, 6]
    assert arm.replies_dropped == 1


def test_replies_of_one_servo_can_be_corrupted(arm: ArmEmulator) -> None:
    arm.corrupt_next_replies(2, servo_id=5)
    replies = arm.feed(packet(t.BROADCAST_ID, t.INST_PING))
    bad = [reply[2] for reply in replies if t.checksum(reply[2:-1]) != reply[-1]]
    assert bad == [5]
    assert len(replies) == 6


def test_return_delay_is_carried_with_the_reply(arm: ArmEmulator) -> None:
    write(arm, 1, t.RETURN_DELAY_TIME, 250)  # the factory 500 µs LeRobot's configure_motors removes
    (reply,) = arm.process(packet(1, t.INST_PING))
    assert reply.delay_s == pytest.approx(500e-6)
