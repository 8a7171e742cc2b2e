"""FeetechBus (real SDK, real pty) against the emulator, including every failure path."""

from __future__ import annotations

import subprocess
import sys
import termios
import time

import pytest
from serial import SerialException
from support import wait_for

from vla_edge.errors import ServoBusError, ServoCommError, ServoFault
from vla_edge.motors.base import ServoBusConfig
from vla_edge.motors.feetech import tables as t
from vla_edge.motors.feetech.bus import FeetechBus
from vla_edge.motors.feetech.emulator import ArmEmulator

IDS = (1, 2, 3, 4, 5, 6)


def test_connect_reads_positions(bus: FeetechBus) -> None:
    assert bus.is_connected
    assert bus.sync_read_positions() == {i: 2048 for i in IDS}


def test_sync_write_goals_moves_the_servos(bus: FeetechBus, emulator: ArmEmulator) -> None:
    goals = {1: 1500, 2: 2500, 3: 2048, 4: 100, 5: 4000, 6: 2200}
    bus.set_torque(True)
    assert all(emulator.torque_enabled().values())
    bus.sync_write_goals(goals)
    wait_for(lambda: bus.sync_read_positions() == goals)
    assert emulator.goal_positions() == goals
    bus.set_torque(False)
    assert not any(emulator.torque_enabled().values())


def test_read_and_write_signed_registers(bus: FeetechBus) -> None:
    bus.write(t.GOAL_VELOCITY, 2, -300)
    assert bus.read(t.GOAL_VELOCITY, 2) == -300
    assert bus.read(t.MODEL_NUMBER, 6) == t.STS3215_MODEL_NUMBER
    assert bus.sync_read(t.TORQUE_ENABLE) == {i: 0 for i in IDS}


def test_goal_for_an_unknown_servo_is_refused(bus: FeetechBus) -> None:
    with pytest.raises(ValueError, match="7"):
        bus.sync_write_goals({7: 2048})


def test_missing_servo_is_named_at_connect(emulator: ArmEmulator, bus_config: ServoBusConfig) -> None:
    emulator.set_offline(4)
    emulator.set_offline(6)
    servo_bus = FeetechBus(bus_config)
    with pytest.raises(ServoBusError, match=r"servos \[4, 6\] did not answer"):
        servo_bus.connect()
    assert not servo_bus.is_connected


def test_wrong_model_is_refused_at_connect() -> None:
    with ArmEmulator(2, model_number=1284) as emulator:
        servo_bus = FeetechBus(ServoBusConfig(emulator.device_path, (1, 2), packet_timeout_ms=500))
        with pytest.raises(ServoBusError, match="wrong servo model .*model 1284"):
            servo_bus.connect()
        assert not servo_bus.is_connected


def test_missing_port_is_a_servo_bus_error(tmp_path) -> None:
    servo_bus = FeetechBus(ServoBusConfig(str(tmp_path / "ttyACM9"), IDS))
    with pytest.raises(ServoBusError, match="cannot open servo port") as info:
        servo_bus.connect()
    assert isinstance(info.value.__cause__, (SerialException, OSError))


def test_unsupported_baudrate_is_refused() -> None:
    with pytest.raises(ServoBusError, match="baud rate 9600"):
        FeetechBus(ServoBusConfig("/dev/null", IDS, baudrate=9600))


def test_second_client_on_the_same_port_is_refused(bus: FeetechBus, bus_config: ServoBusConfig) -> None:
    with pytest.raises(ServoBusError, match="already in use"):
        FeetechBus(bus_config).connect()
    assert bus.sync_read_positions()  # the first client is unaffected


def test_corrupted_status_packet_raises_and_the_bus_recovers(bus: FeetechBus, emulator: ArmEmulator) -> None:
    emulator.corrupt_next_replies(1)
    with pytest.raises(ServoCommError, match="COMM_RX_CORRUPT") as info:
        bus.sync_read_positions()
    assert info.value.result == "COMM_RX_CORRUPT"  # what the actuator's retry policy looks at
    assert bus.is_connected
    assert bus.sync_read_positions() == {i: 2048 for i in IDS}


def test_a_late_reply_is_not_taken_for_the_answer_to_the_next_request(emulator: ArmEmulator) -> None:
    """A reply that comes after the bus gave up waiting is still on the line at the next
    request (the SDK flushes output only); it must not be read as that request's answer."""
    servo_bus = FeetechBus(ServoBusConfig(port=emulator.device_path, motor_ids=IDS, packet_timeout_ms=500))
    servo_bus.connect()
    try:
        emulator.set_position(1, 1000)
        emulator.delay_next_replies(1.5)  # servo 1's answer, and the others queued behind it
        with pytest.raises(ServoCommError, match="COMM_RX_TIMEOUT"):
            servo_bus.sync_read_positions()
        time.sleep(2.0)  # every late status packet of the first request has reached the client's side
        telemetry = servo_bus.sync_read_telemetry()  # a longer span than the stale 2-byte answers
        assert {i: r.position for i, r in telemetry.items()} == emulator.present_positions()
        assert servo_bus.sync_read_positions() == emulator.present_positions()
    finally:
        servo_bus.disconnect()


def test_silent_servo_times_out_with_its_id(bus: FeetechBus, emulator: ArmEmulator) -> None:
    emulator.set_offline(3)
    with pytest.raises(ServoCommError, match="servo 3 .*COMM_RX_TIMEOUT") as info:
        bus.sync_read_positions()
    assert info.value.result == "COMM_RX_TIMEOUT"
    with pytest.raises(ServoBusError, match="COMM_RX_TIMEOUT"):
        bus.read(t.PRESENT_POSITION, 3)
    emulator.set_offline(3, False)
    assert bus.sync_read_positions()[3] == 2048


def test_error_bits_raise_a_servo_fault_that_keeps_the_readings(bus: FeetechBus, emulator: ArmEmulator) -> None:
    emulator.set_error_bits(5, t.ERR_OVERLOAD)
    emulator.set_error_bits(2, t.ERR_OVERHEAT | t.ERR_VOLTAGE)
    with pytest.raises(ServoFault, match="servo 2 reports input voltage, overheat.*servo 5 reports overload") as info:
        bus.sync_read_positions()
    assert info.value.faults == {2: t.ERR_OVERHEAT | t.ERR_VOLTAGE, 5: t.ERR_OVERLOAD}
    assert info.value.values == {i: 2048 for i in IDS}  # every servo was read, the faulty ones too
    with pytest.raises(ServoFault, match="overload") as info:
        bus.read(t.PRESENT_POSITION, 5)
    assert info.value.values == {5: 2048}
    with pytest.raises(ServoFault, match="overload"):
        bus.write(t.GOAL_POSITION, 5, 2000)
    assert emulator.goal_positions()[5] == 2000  # the servo executed the write despite its fault


def test_torque_off_reaches_faulty_servos_without_raising(bus: FeetechBus, emulator: ArmEmulator) -> None:
    bus.set_torque(True)
    emulator.set_error_bits(3, t.ERR_OVERHEAT)
    bus.set_torque(False)  # an acknowledgement with error bits is still an acknowledgement
    assert not any(emulator.torque_enabled().values())


def test_telemetry_reads_present_state_and_returns_error_bits(bus: FeetechBus, emulator: ArmEmulator) -> None:
    emulator.set_error_bits(4, t.ERR_OVERHEAT)
    readings = bus.sync_read_telemetry()  # error bits do not raise here
    assert sorted(readings) == list(IDS)
    assert {i: r.error for i, r in readings.items()} == {i: t.ERR_OVERHEAT if i == 4 else 0 for i in IDS}
    snapshot = emulator.snapshot()
    for servo_id, reading in readings.items():
        assert reading.position == 2048
        assert reading.voltage_v == pytest.approx(snapshot[servo_id].present_voltage * 0.1)
        assert reading.temperature_c == snapshot[servo_id].present_temperature
        assert reading.load_pct == pytest.approx(snapshot[servo_id].present_load * 0.1)
        assert reading.current_ma == pytest.approx(snapshot[servo_id].present_current * 6.5)
        assert not reading.moving and reading.velocity == 0
    assert 5.0 < readings[1].voltage_v < 15.0 and 10.0 < readings[1].temperature_c < 60.0


def test_telemetry_converts_to_physical_units_with_signed_load(bus: FeetechBus, emulator: ArmEmulator) -> None:
    bus.set_torque(True)
    emulator.set_external_load(2, -300)  # 30 % of stall torque, against the positive direction
    emulator.set_voltage(11.1)
    reading = wait_for(lambda: (r := bus.sync_read_telemetry()[2]).load_pct < 0 and r)
    assert reading.load_pct == -30.0  # sign-magnitude with direction bit 10, 0.1 % units
    assert reading.voltage_v == 11.1  # 0.1 V units
    assert reading.current_ma == emulator.snapshot()[2].present_current * 6.5
    assert reading.current_ma > bus.sync_read_telemetry()[1].current_ma  # the loaded joint draws more


def test_torque_off_reaches_every_servo_even_if_one_is_dead(bus: FeetechBus, emulator: ArmEmulator) -> None:
    bus.set_torque(True)
    emulator.set_offline(2)
    with pytest.raises(ServoBusError, match="torque off incomplete.*servo 2"):
        bus.set_torque(False)
    assert [i for i, on in emulator.torque_enabled().items() if on] == [2]


def test_vanished_port_raises_and_disconnects(bus: FeetechBus, emulator: ArmEmulator) -> None:
    emulator.unplug()
    with pytest.raises(ServoBusError, match="was closed") as info:
        bus.sync_read_positions()
    assert isinstance(info.value.__cause__, (SerialException, OSError, termios.error))
    assert not bus.is_connected
    with pytest.raises(ServoBusError, match="not connected"):
        bus.sync_write_goals({1: 2048})
    bus.disconnect()  # idempotent
    with pytest.raises(ServoBusError, match="cannot open servo port"):
        bus.connect()  # the device node is gone, as after pulling the USB cable


def test_emulator_cli_prints_the_device_path_first_and_stops_on_sigterm() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "vla_edge.motors.feetech.emulator_cli", "--servos", "6"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        path = process.stdout.readline().strip()
        assert path.startswith("/dev/"), path
        servo_bus = FeetechBus(ServoBusConfig(path, IDS, packet_timeout_ms=500))
        servo_bus.connect()
        assert servo_bus.sync_read_positions() == {i: 2048 for i in IDS}
        servo_bus.disconnect()
        process.terminate()
        assert process.wait(timeout=10) == 0, process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_emulator_can_be_restarted_on_a_new_terminal() -> None:
    emulator = ArmEmulator(1).start()
    emulator.stop()
    emulator.start()
    try:
        servo_bus = FeetechBus(ServoBusConfig(emulator.device_path, (1,), packet_timeout_ms=500))
        servo_bus.connect()
        wait_for(lambda: servo_bus.sync_read_positions() == {1: 2048})
        servo_bus.disconnect()
    finally:
        emulator.stop()
