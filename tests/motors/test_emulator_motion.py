"""Trapezoidal motion of the emulated STS3215, stepped on an injected clock (no wall time).

Registers are written with real protocol-0 WRITE packets through ``feed()``, so the
path is the one a serial client takes; the clock advances only when the test says so.
"""

from __future__ import annotations

import math

import pytest

from vla_edge.motors.feetech import tables as t
from vla_edge.motors.feetech.emulator import ArmEmulator, EmulatedServo, ServoPhysics
from vla_edge.motors.feetech.emulator.motion import move_to_position, trapezoid_duration

STEP_S = 0.001
MAX_SPEED = 4096 / 6 / 0.222  # STS3215: 0.222 s/60° at 12 V
MAX_ACCELERATION = 25_400.0  # Acceleration 0 means the servo's maximum: 254 × 100 steps/s²


class SteppedClock:
    """A monotonic clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def step(self, seconds: float = STEP_S) -> None:
        self.now += seconds


def write_packet(servo_id: int, register: t.Register, value: int) -> bytes:
    params = bytes([register.address, *t.to_bytes(t.encode_value(register, value), register.size)])
    body = bytes([servo_id, len(params) + 2, t.INST_WRITE]) + params
    return b"\xff\xff" + body + bytes([t.checksum(body)])


def write(emulator: ArmEmulator, servo_id: int, register: t.Register, value: int) -> None:
    replies = emulator.feed(write_packet(servo_id, register, value))
    assert [reply[4] for reply in replies] == [0], f"write {register.name}={value}: {replies!r}"


@pytest.fixture
def clock() -> SteppedClock:
    return SteppedClock()


@pytest.fixture
def servo(clock: SteppedClock) -> ArmEmulator:
    return ArmEmulator(1, clock=clock)


def run_until_arrived(emulator: ArmEmulator, clock: SteppedClock, limit_s: float = 5.0) -> list[tuple[float, int, int]]:
    """Step the clock until servo 1 has stopped; returns ``(t, present position, present velocity)``.

    Stopped means ``Moving`` is 0 *and* ``Present_Velocity`` reads 0: ``Moving`` clears as
    soon as the position reads the goal, while the last half step is still being crawled.
    """
    start = clock.now
    trace = []
    while clock.now - start < limit_s:
        clock.step()
        state = emulator.snapshot()[1]
        trace.append((clock.now - start, state.present_position, state.present_velocity))
        if not state.moving and state.present_velocity == 0:
            return trace
    raise AssertionError(f"servo still moving after {limit_s} s: {trace[-1]}")


def test_default_physics_are_an_sts3215_at_12_volts() -> None:
    physics = ServoPhysics()
    assert physics.max_speed == pytest.approx(3075, abs=1)
    assert physics.max_acceleration == MAX_ACCELERATION


def test_thousand_step_move_at_full_speed_takes_the_trapezoid_time(servo: ArmEmulator, clock: SteppedClock) -> None:
    write(servo, 1, t.TORQUE_ENABLE, 1)
    write(servo, 1, t.GOAL_POSITION, 2048 + 1000)  # Goal_Velocity 0 and Acceleration 0: the servo's maxima
    trace = run_until_arrived(servo, clock)

    ramp_time = MAX_SPEED / MAX_ACCELERATION
    ramp_distance = MAX_SPEED**2 / (2 * MAX_ACCELERATION)
    expected = 2 * ramp_time + (1000 - 2 * ramp_distance) / MAX_SPEED  # about 0.446 s
    arrived = trace[-1][0]
    assert abs(arrived - expected) <= STEP_S, (arrived, expected)
    assert trace[-1][1] == 3048
    assert max(abs(v) for _, _, v in trace) == round(MAX_SPEED)  # it cruised at the no-load maximum
    assert trapezoid_duration(1000, MAX_SPEED, MAX_ACCELERATION) == pytest.approx(expected)


def test_speed_never_exceeds_goal_velocity(servo: ArmEmulator, clock: SteppedClock) -> None:
    write(servo, 1, t.GOAL_VELOCITY, 800)
    write(servo, 1, t.TORQUE_ENABLE, 1)
    write(servo, 1, t.GOAL_POSITION, 100)  # downward: velocities are negative (sign-magnitude on the wire)
    trace = run_until_arrived(servo, clock)
    speeds = [v for _, _, v in trace]
    assert min(speeds) == -800 and max(speeds) <= 0
    assert trace[-1][1] == 100
    assert abs(trace[-1][0] - trapezoid_duration(1948, 800, MAX_ACCELERATION)) <= STEP_S


def test_goal_velocity_above_the_servo_maximum_is_capped(servo: ArmEmulator, clock: SteppedClock) -> None:
    write(servo, 1, t.GOAL_VELOCITY, 10_000)
    write(servo, 1, t.TORQUE_ENABLE, 1)
    write(servo, 1, t.GOAL_POSITION, 4000)
    trace = run_until_arrived(servo, clock)
    assert max(v for _, _, v in trace) == round(MAX_SPEED)


def test_acceleration_register_sets_the_ramp(servo: ArmEmulator, clock: SteppedClock) -> None:
    write(servo, 1, t.ACCELERATION, 10)  # 10 × 100 steps/s²
    write(servo, 1, t.GOAL_VELOCITY, 500)
    write(servo, 1, t.TORQUE_ENABLE, 1)
    write(servo, 1, t.GOAL_POSITION, 4000)
    samples = {}
    for step in range(1, 501):
        clock.step()
        samples[step] = servo.snapshot()[1]
    for ms in (100, 200, 300, 400):  # ramping: v = a·t, x = a·t²/2
        seconds = ms / 1000
        assert samples[ms].present_velocity == round(1000 * seconds)
        assert abs(samples[ms].present_position - (2048 + 500 * seconds**2)) <= 1
    assert samples[500].present_velocity == 500  # capped after 0.5 s
    trace = run_until_arrived(servo, clock)
    decelerating = [v for _, _, v in trace if v < 500]
    assert decelerating == sorted(decelerating, reverse=True)  # it ramps down as it ramped up
    assert trace[-1][1] == 4000


def test_maximum_acceleration_caps_the_acceleration_register(servo: ArmEmulator, clock: SteppedClock) -> None:
    write(servo, 1, t.LOCK, 0)
    write(servo, 1, t.MAXIMUM_ACCELERATION, 5)
    write(servo, 1, t.ACCELERATION, 200)
    write(servo, 1, t.TORQUE_ENABLE, 1)
    write(servo, 1, t.GOAL_POSITION, 4000)
    for _ in range(100):
        clock.step()
    assert servo.snapshot()[1].present_velocity == 50  # 500 steps/s² for 0.1 s


def test_position_limits_clamp_the_goal(servo: ArmEmulator, clock: SteppedClock) -> None:
    write(servo, 1, t.MIN_POSITION_LIMIT, 1000)
    write(servo, 1, t.MAX_POSITION_LIMIT, 3000)
    write(servo, 1, t.TORQUE_ENABLE, 1)
    write(servo, 1, t.GOAL_POSITION, 3500)
    assert run_until_arrived(servo, clock)[-1][1] == 3000
    write(servo, 1, t.GOAL_POSITION, 10)
    assert run_until_arrived(servo, clock)[-1][1] == 1000
    assert servo.snapshot()[1].goal_position == 10  # the register keeps what was written


def test_homing_offset_shifts_present_and_goal_frames(servo: ArmEmulator, clock: SteppedClock) -> None:
    write(servo, 1, t.HOMING_OFFSET, 300)  # Present_Position = actual - Homing_Offset
    assert servo.snapshot()[1].present_position == 2048 - 300
    write(servo, 1, t.TORQUE_ENABLE, 1)
    write(servo, 1, t.GOAL_POSITION, 2048)  # in the offset frame: the shaft goes to 2348
    trace = run_until_arrived(servo, clock)
    assert trace[-1][1] == 2048
    assert abs(trace[-1][0] - trapezoid_duration(300, MAX_SPEED, MAX_ACCELERATION)) <= STEP_S
    write(servo, 1, t.TORQUE_ENABLE, 0)
    write(servo, 1, t.HOMING_OFFSET, -47)  # half-turn homing style: the frame wraps, the shaft stays
    assert servo.snapshot()[1].present_position == 2348 + 47


def test_present_position_wraps_within_one_turn(servo: ArmEmulator) -> None:
    write(servo, 1, t.HOMING_OFFSET, -2047)
    assert servo.snapshot()[1].present_position == (2048 + 2047) % t.RESOLUTION


def test_no_motion_without_torque(servo: ArmEmulator, clock: SteppedClock) -> None:
    write(servo, 1, t.GOAL_POSITION, 3000)
    clock.step(1.0)
    state = servo.snapshot()[1]
    assert (state.present_position, state.moving, state.present_velocity) == (2048, False, 0)


def test_constant_speed_mode_turns_continuously(servo: ArmEmulator, clock: SteppedClock) -> None:
    write(servo, 1, t.LOCK, 0)
    write(servo, 1, t.OPERATING_MODE, 1)
    write(servo, 1, t.GOAL_VELOCITY, -1000)
    write(servo, 1, t.TORQUE_ENABLE, 1)
    clock.step(2.0)
    state = servo.snapshot()[1]
    ramp = 1000 / MAX_ACCELERATION
    travelled = 1000 * 2.0 - 1000 * ramp / 2
    assert state.present_velocity == -1000 and state.moving
    assert state.present_position == round(2048 - travelled) % t.RESOLUTION


def test_a_goal_changed_mid_move_is_reached_without_exceeding_limits() -> None:
    position, velocity = 0.0, 0.0
    for target in (3000.0, 500.0, 501.0, 4000.0):
        for _ in range(80):
            position, velocity, _ = move_to_position(position, velocity, target, 1500.0, 20_000.0, 0.01)
            assert abs(velocity) <= 1500.0 + 1e-6
        position, velocity, _ = move_to_position(position, velocity, target, 1500.0, 20_000.0, 10.0)
        assert (position, velocity) == (target, 0.0)


def test_one_long_step_equals_many_small_ones() -> None:
    big = move_to_position(0.0, 0.0, 1234.5, 2000.0, 9000.0, 0.3)
    x, v = 0.0, 0.0
    for _ in range(300):
        x, v, _ = move_to_position(x, v, 1234.5, 2000.0, 9000.0, 0.001)
    assert math.isclose(big[0], x, abs_tol=1e-6) and math.isclose(big[1], v, abs_tol=1e-6)


def test_power_on_next_to_the_encoder_seam_holds_still() -> None:
    servo = EmulatedServo(1, 2048, t.STS3215_MODEL_NUMBER, ServoPhysics())
    servo.shaft = 4095.7  # a fraction past the seam: it reads 0
    servo.power_on()
    assert servo.get(t.PRESENT_POSITION) == servo.get(t.GOAL_POSITION) == 0
    assert abs(servo.target() - servo.shaft) < 0.5  # holding there, not a turn away
