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
