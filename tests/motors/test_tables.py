"""Control-table facts and value encodings."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vla_edge.motors.feetech import tables as t


@given(st.integers(min_value=-(2**15) + 1, max_value=2**15 - 1))
def test_sign_magnitude_round_trip_bit_15(value: int) -> None:
    raw = t.encode_sign_magnitude(value, 15)
    assert 0 <= raw < 2**16
    assert t.decode_sign_magnitude(raw, 15) == value


@given(st.integers(min_value=-2047, max_value=2047))
def test_homing_offset_round_trip_uses_bit_11(value: int) -> None:
    raw = t.encode_value(t.HOMING_OFFSET, value)
    assert raw < 2**12
    assert t.decode_value(t.HOMING_OFFSET, raw) == value


def test_sign_magnitude_known_values() -> None:
    assert t.encode_sign_magnitude(-1, 15) == 0x8001
    assert t.encode_sign_magnitude(100, 15) == 100
    assert t.decode_sign_magnitude(0x8000 | 300, 15) == -300
    assert t.encode_sign_magnitude(-5, 11) == 0x805
    assert t.decode_sign_magnitude(0x805, 11) == -5
    assert t.decode_sign_magnitude(0, 15) == 0


def test_sign_magnitude_rejects_too_large() -> None:
    with pytest.raises(ValueError):
        t.encode_sign_magnitude(2**15, 15)
    with pytest.raises(ValueError):
        t.encode_value(t.HOMING_OFFSET, -2048)
    with pytest.raises(ValueError):
        t.encode_value(t.TORQUE_ENABLE, 256)
    with pytest.raises(ValueError):
        t.encode_value(t.MOVING, -1)


@given(st.integers(min_value=0, max_value=2**16 - 1))
def test_little_endian_bytes_round_trip(raw: int) -> None:
    data = t.to_bytes(raw, 2)
    assert data == [raw & 0xFF, raw >> 8]
    assert t.from_bytes(data) == raw


def test_registers_match_the_sts_memory_table() -> None:
    expected = {
        "Model_Number": (3, 2), "ID": (5, 1), "Baud_Rate": (6, 1), "Return_Delay_Time": (7, 1),
        "Min_Position_Limit": (9, 2), "Max_Position_Limit": (11, 2), "Homing_Offset": (31, 2),
        "Operating_Mode": (33, 1), "Torque_Enable": (40, 1), "Acceleration": (41, 1), "Goal_Position": (42, 2),
        "Goal_Velocity": (46, 2), "Lock": (55, 1), "Present_Position": (56, 2), "Present_Velocity": (58, 2),
        "Present_Load": (60, 2), "Present_Voltage": (62, 1), "Present_Temperature": (63, 1), "Moving": (66, 1),
        "Present_Current": (69, 2),
    }  # fmt: skip
    for name, (address, size) in expected.items():
        reg = t.STS3215_REGISTERS[name]
        assert (reg.address, reg.size) == (address, size), name
    assert t.STS3215_MODEL_NUMBER == 777
    assert all(reg.address + reg.size <= t.TABLE_SIZE for reg in t.STS3215_REGISTERS.values())


def test_checksum_of_a_known_ping() -> None:
    # FF FF 01 02 01 FB: ping servo 1
    assert t.checksum([0x01, 0x02, 0x01]) == 0xFB


def test_error_bits_are_named() -> None:
    assert t.describe_error_bits(t.ERR_OVERLOAD | t.ERR_OVERHEAT) == "overheat, overload"
    assert t.describe_error_bits(0) == "none"
    assert "unknown" in t.describe_error_bits(0x80)


def test_every_register_lerobot_names_for_the_sts3215_is_in_the_table() -> None:
    lerobot_tables = pytest.importorskip("lerobot.motors.feetech.tables")
    theirs = lerobot_tables.MODEL_CONTROL_TABLE["sts3215"]
    undocumented = {"Goal_Position_2"}  # Feetech does not say what it holds
    aliases = {"Moving_Velocity": "Moving_Velocity_Threshold"}  # LeRobot names address 80 twice
    for name, (address, size) in theirs.items():
        name = name.strip()  # LeRobot spells "Acceleration_Multiplier " with a trailing space
        if name in undocumented:
            continue
        reg = t.STS3215_REGISTERS[aliases.get(name, name)]
        assert (reg.address, reg.size) == (address, size), name


def test_sign_bits_and_baud_codes_agree_with_lerobot() -> None:
    lerobot_tables = pytest.importorskip("lerobot.motors.feetech.tables")
    for name, bit in lerobot_tables.MODEL_ENCODING_TABLE["sts3215"].items():
        if name in t.STS3215_REGISTERS:
            assert t.STS3215_REGISTERS[name].sign_bit == bit, name
    assert lerobot_tables.MODEL_BAUDRATE_TABLE["sts3215"] == t.BAUDRATE_CODES
    assert lerobot_tables.MODEL_NUMBER_TABLE["sts3215"] == t.STS3215_MODEL_NUMBER


def test_firmware_baud_codes_match_lerobot_for_the_rates_it_uses() -> None:
    for rate in (1_000_000, 500_000, 250_000, 128_000, 115_200):
        assert t.BAUDRATES_BY_CODE[t.BAUDRATE_CODES[rate]] == rate


def test_memory_areas() -> None:
    assert t.is_persistent(t.ID.address) and t.is_persistent(t.HOMING_OFFSET.address)
    assert t.is_persistent(t.MAXIMUM_ACCELERATION.address)  # factory area
    assert not t.is_persistent(t.TORQUE_ENABLE.address) and not t.is_persistent(t.LOCK.address)
    assert not t.is_persistent(t.PRESENT_CURRENT.address)
    assert all(reg.address + reg.size <= t.EEPROM_END for reg in (t.VELOCITY_I, t.OVER_CURRENT_PROTECTION_TIME))
