"""LeRobot's own Feetech code (``FeetechMotorsBus``, ``SO101Follower``) against the emulator.

LeRobot 0.4's bus goes through the real feetech-servo-sdk and pyserial onto the
emulator's pseudo-terminal: its handshake (ping every id, compare model numbers and
firmware versions), ``configure_motors``, calibration writes and reads, sync reads of
the telemetry registers, goal writes and torque switching all run unmodified. Internet
sockets are blocked for the duration of each test, so nothing can download.
"""

from __future__ import annotations

import dataclasses
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import wait_for

from vla_edge.motors.feetech import tables as t
from vla_edge.motors.feetech.emulator import ArmEmulator

lerobot_motors = pytest.importorskip("lerobot.motors", reason="LeRobot is not installed")
lerobot_feetech = pytest.importorskip("lerobot.motors.feetech")
Motor, MotorCalibration, MotorNormMode = lerobot_motors.Motor, lerobot_motors.MotorCalibration, lerobot_motors.MotorNormMode
FeetechMotorsBus = lerobot_feetech.FeetechMotorsBus

JOINTS = ("shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper")
CALIBRATION = {
    name: MotorCalibration(id=i, drive_mode=0, homing_offset=offset, range_min=low, range_max=high)
    for i, (name, offset, low, high) in enumerate(
        [
            ("shoulder_pan", -120, 750, 3300),
            ("shoulder_lift", 300, 820, 3200),
            ("elbow_flex", -2047, 900, 3050),  # the extremes of the sign-magnitude range (bit 11)
            ("wrist_flex", 2047, 800, 3100),
            ("wrist_roll", 0, 0, 4095),
            ("gripper", -600, 2000, 3400),
        ],
        start=1,
    )
}


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail any attempt to open an internet connection (LeRobot must not download anything here)."""
    real_connect = socket.socket.connect

    def guarded(self: socket.socket, address: Any) -> None:
        if self.family in (socket.AF_INET, socket.AF_INET6):
            raise AssertionError(f"network access attempted: {address}")
        real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


PACKET_TIMEOUT_MS = 500.0
"""LeRobot waits 50 ms for a status packet; this shared machine sometimes stalls longer."""


def relax_timeouts(motors_bus: Any) -> Any:
    """Give LeRobot's port handler the generous timeout the other emulator tests use (timing only)."""
    handler = motors_bus.port_handler

    def set_packet_timeout(packet_length: int) -> None:
        handler.packet_start_time = handler.getCurrentTime()
        handler.packet_timeout = handler.tx_time_per_byte * packet_length + PACKET_TIMEOUT_MS

    handler.setPacketTimeout = set_packet_timeout
    return motors_bus


def make_bus(port: str, motors: dict[str, Any] | None = None) -> Any:
    return relax_timeouts(FeetechMotorsBus(port, motors or so101_motors()))


def so101_motors(norm_body: Any = None) -> dict[str, Any]:
    body = norm_body or MotorNormMode.DEGREES
    return {
        name: Motor(i, "sts3215", MotorNormMode.RANGE_0_100 if name == "gripper" else body)
        for i, name in enumerate(JOINTS, start=1)
    }


@pytest.fixture
def bus(emulator: ArmEmulator) -> Iterator[Any]:
    motors_bus = make_bus(emulator.device_path)
    motors_bus.connect()
    yield motors_bus
    if motors_bus.is_connected:
        motors_bus.disconnect(disable_torque=False)


def write_saved_calibration(emulator: ArmEmulator, calibration: dict[str, Any]) -> None:
    """Leave the arm as after LeRobot's calibration: written unlocked, so it survives power cycles."""
    motors_bus = make_bus(emulator.device_path)
    motors_bus.connect()
    with motors_bus.torque_disabled():
        motors_bus.write_calibration(calibration)
    motors_bus.disconnect()
    emulator.power_cycle()


def test_handshake_passes_and_broadcast_ping_finds_the_arm(bus: Any) -> None:
    assert bus.is_connected
    assert bus.broadcast_ping() == {i: t.STS3215_MODEL_NUMBER for i in range(1, 7)}
    assert bus._read_firmware_version(bus.ids) == {i: "3.10" for i in range(1, 7)}


def test_handshake_reports_a_missing_servo(emulator: ArmEmulator) -> None:
    emulator.set_offline(4)
    motors_bus = make_bus(emulator.device_path)
    with pytest.raises(RuntimeError, match=r"Missing motor IDs:\s+- 4"):
        motors_bus.connect()


def test_handshake_refuses_another_model() -> None:
    with ArmEmulator(6, model_number=1284) as emulator:  # an SCS0009
        motors_bus = make_bus(emulator.device_path)
        with pytest.raises(RuntimeError, match="incorrect model numbers"):
            motors_bus.connect()


def test_handshake_refuses_mixed_firmware(emulator: ArmEmulator) -> None:
    emulator.set_firmware_version(5, 3, 9)
    motors_bus = make_bus(emulator.device_path)
    with pytest.raises(RuntimeError, match="different firmware versions"):
        motors_bus.connect()


def test_configure_motors_settings_are_saved(bus: Any, emulator: ArmEmulator) -> None:
    with bus.torque_disabled():
        for joint in JOINTS:  # start from the factory's 500 µs reply delay
            bus.write("Return_Delay_Time", joint, 250)
    emulator.power_cycle()
    assert all(emulator.register(i, t.RETURN_DELAY_TIME) == 250 for i in range(1, 7))
    with bus.torque_disabled():  # LeRobot's order: torque off and Lock 0, write, torque on and Lock 1
        bus.configure_motors()
    assert all(emulator.torque_enabled().values())
    for i in range(1, 7):
        assert emulator.register(i, t.RETURN_DELAY_TIME) == 0
        assert emulator.register(i, t.MAXIMUM_ACCELERATION) == 254
        assert emulator.register(i, t.ACCELERATION) == 254
        assert emulator.register(i, t.LOCK) == 1
    emulator.power_cycle()
    assert all(emulator.register(i, t.RETURN_DELAY_TIME) == 0 for i in range(1, 7))  # EEPROM: saved
    assert all(emulator.register(i, t.ACCELERATION) == 0 for i in range(1, 7))  # RAM: back to power-on


def test_calibration_round_trip_survives_power_cycle(bus: Any, emulator: ArmEmulator) -> None:
    with bus.torque_disabled():
        bus.write_calibration(CALIBRATION)
    assert bus.read_calibration() == CALIBRATION
    assert bus.is_calibrated
    assert emulator.register(3, t.HOMING_OFFSET) == -2047
    emulator.power_cycle()
    assert bus.read_calibration() == CALIBRATION


def test_calibration_written_while_locked_is_lost_at_power_cycle(bus: Any, emulator: ArmEmulator) -> None:
    bus.write_calibration(CALIBRATION)  # Lock still at its power-on 1: acts, is not saved
    assert bus.read_calibration() == CALIBRATION
    emulator.power_cycle()
    assert not bus.is_calibrated
    assert {cal.homing_offset for cal in bus.read_calibration().values()} == {0}


def test_half_turn_homing_centres_every_joint(bus: Any, emulator: ArmEmulator) -> None:
    for i, ticks in zip(range(1, 7), (100, 900, 2048, 3000, 3900, 4000), strict=True):
        emulator.set_position(i, ticks)
    bus.disable_torque()  # as SOFollower.calibrate() does; torque stays off while ranges are recorded
    offsets = bus.set_half_turn_homings()
    assert offsets == {name: ticks - 2047 for name, ticks in zip(JOINTS, (100, 900, 2048, 3000, 3900, 4000))}
    assert set(bus.sync_read("Present_Position", normalize=False).values()) == {2047}


def test_sync_read_of_every_present_register(bus: Any, emulator: ArmEmulator) -> None:
    bus.enable_torque()
    emulator.set_external_load(2, -250)  # shoulder_lift holding the arm against gravity
    emulator.set_voltage(11.7)
    registers = [name for name in bus.model_ctrl_table["sts3215"] if name.startswith("Present_")]
    readings = {name: bus.sync_read(name, normalize=False) for name in [*registers, "Moving", "Status"]}
    assert readings["Present_Position"] == {name: 2048 for name in JOINTS}
    assert readings["Present_Velocity"] == {name: 0 for name in JOINTS}
    assert readings["Present_Load"]["shoulder_lift"] == -250  # LeRobot decodes the sign on bit 10
    assert readings["Present_Load"]["elbow_flex"] == 0
    assert readings["Present_Voltage"] == {name: 117 for name in JOINTS}
    assert readings["Present_Temperature"] == {name: 30 for name in JOINTS}
    assert readings["Present_Current"]["shoulder_lift"] > readings["Present_Current"]["elbow_flex"] > 0
    assert readings["Moving"] == readings["Status"] == {name: 0 for name in JOINTS}


def test_sync_write_goal_position_moves_the_servos_then_torque_off(bus: Any, emulator: ArmEmulator) -> None:
    with bus.torque_disabled():
        bus.write_calibration(CALIBRATION)
    goals = {"shoulder_pan": -30.0, "shoulder_lift": 15.5, "elbow_flex": 0.0, "wrist_flex": 42.0,
             "wrist_roll": -90.0, "gripper": 25.0}  # fmt: skip
    expected = {}
    for i, (name, value) in enumerate(goals.items(), start=1):
        cal = CALIBRATION[name]
        if name == "gripper":  # LeRobot's RANGE_0_100 and DEGREES conversions
            expected[i] = int(value / 100 * (cal.range_max - cal.range_min) + cal.range_min)
        else:
            expected[i] = int(value * 4095 / 360 + (cal.range_min + cal.range_max) / 2)
    bus.sync_write("Goal_Position", goals)
    wait_for(lambda: emulator.goal_positions() == expected)
    assert emulator.present_positions() != expected or not any(emulator.torque_enabled().values())
    wait_for(lambda: emulator.present_positions() == expected)
    assert bus.sync_read("Present_Position", normalize=False) == dict(zip(JOINTS, expected.values(), strict=True))
    observed = bus.sync_read("Present_Position")
    assert all(abs(observed[name] - goals[name]) < 0.2 for name in JOINTS)
    bus.disable_torque()
    assert not any(emulator.torque_enabled().values())
    assert all(emulator.register(i, t.LOCK) == 0 for i in range(1, 7))  # LeRobot leaves EEPROM open


def test_setup_motor_finds_a_new_servo_and_gives_it_id_and_baud(tmp_path: Path) -> None:
    emulator = ArmEmulator(1)  # a new servo: id 1, and (say) left at 500 kbps
    for register, value in ((t.LOCK, 0), (t.BAUD_RATE, t.BAUDRATE_CODES[500_000])):
        params = bytes([register.address, value])
        body = bytes([1, len(params) + 2, t.INST_WRITE]) + params
        emulator.feed(b"\xff\xff" + body + bytes([t.checksum(body)]))
    emulator.power_cycle()
    with emulator:
        motors_bus = make_bus(emulator.device_path, {"gripper": Motor(6, "sts3215", MotorNormMode.RANGE_0_100)})
        motors_bus.setup_motor("gripper")  # broadcast-pings each baud rate, then writes ID and Baud_Rate
        assert motors_bus.get_baudrate() == 1_000_000
        emulator.power_cycle()  # written unlocked (LeRobot disables torque and Lock first): saved
        assert emulator.ids == [6]
        assert emulator.snapshot()[6].baudrate == 1_000_000
        assert motors_bus.ping("gripper") == t.STS3215_MODEL_NUMBER
        motors_bus.port_handler.closePort()


def test_so101_follower_connects_observes_and_acts(emulator: ArmEmulator, tmp_path: Path) -> None:
    so_follower = pytest.importorskip("lerobot.robots.so_follower")
    write_saved_calibration(emulator, CALIBRATION)
    (tmp_path / "edge_arm.json").write_text(
        json.dumps({name: dataclasses.asdict(cal) for name, cal in CALIBRATION.items()}, indent=2)
    )
    config = so_follower.SO101FollowerConfig(port=emulator.device_path, id="edge_arm", calibration_dir=tmp_path)
    robot = so_follower.SO101Follower(config)
    relax_timeouts(robot.bus)
    robot.connect(calibrate=False)
    try:
        assert robot.is_connected and robot.is_calibrated
        for i in range(1, 7):  # SOFollower.configure()
            assert (emulator.register(i, t.P_COEFFICIENT), emulator.register(i, t.I_COEFFICIENT)) == (16, 0)
            assert emulator.register(i, t.D_COEFFICIENT) == 32
            assert emulator.register(i, t.OPERATING_MODE) == 0
        assert emulator.register(6, t.MAX_TORQUE_LIMIT) == 500  # the gripper's burnout guards
        assert emulator.register(6, t.PROTECTION_CURRENT) == 250
        assert emulator.register(6, t.OVERLOAD_TORQUE) == 25
        assert all(emulator.torque_enabled().values())

        observation = robot.get_observation()
        assert set(observation) == {f"{name}.pos" for name in JOINTS}

        action = {"shoulder_pan.pos": 20.0, "shoulder_lift.pos": -10.0, "elbow_flex.pos": 5.0,
                  "wrist_flex.pos": -45.0, "wrist_roll.pos": 60.0, "gripper.pos": 80.0}  # fmt: skip
        sent = robot.send_action(action)
        assert sent == action
        expected = {
            i: int(action[f"{name}.pos"] * 4095 / 360 + (cal.range_min + cal.range_max) / 2)
            for i, (name, cal) in enumerate(CALIBRATION.items(), start=1)
            if name != "gripper"
        }
        expected[6] = int(0.8 * (3400 - 2000) + 2000)
        wait_for(lambda: emulator.goal_positions() == expected)
        wait_for(lambda: emulator.present_positions() == expected)
        observation = robot.get_observation()
        assert all(abs(observation[key] - value) < 0.2 for key, value in action.items())
    finally:
        robot.disconnect()
    assert not any(emulator.torque_enabled().values())  # disable_torque_on_disconnect
