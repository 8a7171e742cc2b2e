"""The event-stream codec: round trips, interoperability, and every way a frame can be broken."""

from __future__ import annotations

import struct
import uuid
import zlib

import pytest

from vla_edge.core.eventstream import (
    ChecksumError,
    Decoder,
    FrameTooLargeError,
    FramingError,
    Header,
    HeaderError,
    HeaderType,
    Message,
    OversizedMessage,
    TruncatedFrameError,
    decode_message,
    encode_message,
)

ALL_TYPES = [
    Header.bool("yes", True),
    Header.bool("no", False),
    Header.byte("byte", -128),
    Header.int16("short", 32767),
    Header.int32(":stream-id", -(2**31)),
    Header.int64("long", 2**63 - 1),
    Header.byte_buf("buf", b"\x00\xffraw"),
    Header.string("text", "grüße ✓"),
    Header.timestamp("when", 1_700_000_000_123),
    Header.uuid("id", uuid.UUID("12345678-1234-5678-1234-567812345678")),
]


def test_every_header_type_round_trips() -> None:
    frame = encode_message(ALL_TYPES, b'{"k": 1}')
    message = decode_message(frame)
    assert message.headers == tuple(ALL_TYPES)
    assert message.payload == b'{"k": 1}'
    assert [h.type for h in message.headers] == [
        HeaderType.BOOL_TRUE, HeaderType.BOOL_FALSE, HeaderType.BYTE, HeaderType.INT16, HeaderType.INT32,
        HeaderType.INT64, HeaderType.BYTE_BUF, HeaderType.STRING, HeaderType.TIMESTAMP, HeaderType.UUID]


def test_layout_is_the_documented_one() -> None:
    frame = encode_message([Header.string("a", "b")], b"xyz")
    total, headers_len, prelude_crc = struct.unpack(">III", frame[:12])
    assert total == len(frame) == 12 + headers_len + 3 + 4
    assert headers_len == 1 + 1 + 1 + 2 + 1  # name len, name, type, value len, value
    assert prelude_crc == zlib.crc32(frame[:8])
    assert struct.unpack(">I", frame[-4:])[0] == zlib.crc32(frame[:-4])


def test_empty_message_is_sixteen_bytes() -> None:
    frame = encode_message([], b"")
    assert len(frame) == 16
    assert decode_message(frame) == Message((), b"")


def test_botocore_decodes_our_frames() -> None:
    eventstream = pytest.importorskip("botocore.eventstream", reason="botocore provides the reference decoder")
    buffer = eventstream.EventStreamBuffer()
    buffer.add_data(encode_message(ALL_TYPES[:9], b"payload"))
    (message,) = list(buffer)
    assert message.payload == b"payload"
    assert message.headers["text"] == "grüße ✓"
    assert message.headers[":stream-id"] == -(2**31)
    assert message.headers["when"] == 1_700_000_000_123


@pytest.mark.parametrize("offset", [0, 4, 9])
def test_corrupt_prelude_is_a_checksum_error(offset: int) -> None:
    frame = bytearray(encode_message([Header.string("a", "b")], b"payload"))
    frame[offset] ^= 0x01  # total length, headers length, or the prelude CRC itself
    with pytest.raises(ChecksumError, match="prelude CRC mismatch"):
        decode_message(bytes(frame))


@pytest.mark.parametrize("where", ["header", "payload", "trailer"])
def test_corrupt_body_is_a_checksum_error(where: str) -> None:
    frame = bytearray(encode_message([Header.string("name", "value")], b"payload"))
    index = {"header": 14, "payload": len(frame) - 6, "trailer": len(frame) - 1}[where]
    frame[index] ^= 0x40
    with pytest.raises(ChecksumError, match="message CRC mismatch"):
        decode_message(bytes(frame))


def test_truncated_frames_are_reported() -> None:
    frame = encode_message([Header.string("a", "b")], b"payload")
    with pytest.raises(TruncatedFrameError):
        decode_message(frame[:8])
    with pytest.raises(TruncatedFrameError, match="announces"):
        decode_message(frame[:-1])


def test_bad_header_type_is_a_header_error() -> None:
    headers = b"\x01a\x0c"  # name "a", value type 12 (does not exist)
    prelude = struct.pack(">II", 16 + len(headers), len(headers))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    body = prelude + headers
    frame = body + struct.pack(">I", zlib.crc32(body))
    with pytest.raises(HeaderError, match="unknown value type 12"):
        decode_message(frame)


def test_values_that_do_not_fit_are_refused_when_encoding() -> None:
    with pytest.raises(ValueError, match="does not fit INT32"):
        encode_message([Header.int32("x", 2**31)])
    with pytest.raises(ValueError, match="header name"):
        encode_message([Header.string("", "x")])


def test_decoder_reassembles_frames_fed_byte_by_byte() -> None:
    frames = [encode_message([Header.int32(":stream-id", i)], b"x" * i) for i in range(5)]
    stream = b"".join(frames)
    decoder = Decoder()
    out: list[Message | OversizedMessage] = []
    for index in range(len(stream)):
        out += decoder.feed(stream[index : index + 1])
        if index < len(stream) - 1:
            assert len(out) < 5
    assert [m.payload for m in out if isinstance(m, Message)] == [b"x" * i for i in range(5)]
    assert decoder.at_boundary


def test_decoder_returns_several_frames_from_one_chunk() -> None:
    stream = encode_message([], b"one") + encode_message([], b"two") + encode_message([], b"thr")[:5]
    decoder = Decoder()
    assert [m.payload for m in decoder.feed(stream)] == [b"one", b"two"]  # type: ignore[union-attr]
    assert not decoder.at_boundary


def test_decoder_refuses_frames_above_its_cap_and_stays_failed() -> None:
    decoder = Decoder(max_message_length=1024)
    big = encode_message([], b"x" * 2000)
    with pytest.raises(FrameTooLargeError, match="exceeds the 1024-byte limit"):
        decoder.feed(big[:12])
    with pytest.raises(FrameTooLargeError):
        decoder.feed(encode_message([], b"fine"))


def test_decoder_discards_oversized_payloads_but_keeps_their_headers() -> None:
    decoder = Decoder(max_payload_length=10)
    big = encode_message([Header.int32(":stream-id", 7)], b"y" * 5000)
    small = encode_message([Header.int32(":stream-id", 8)], b"ok")
    out: list[Message | OversizedMessage] = []
    for start in range(0, len(big) + len(small), 700):
        out += decoder.feed((big + small)[start : start + 700])
    assert isinstance(out[0], OversizedMessage)
    assert out[0].payload_length == 5000
    assert out[0].header(":stream-id").value == 7  # type: ignore[union-attr]
    assert out[1] == Message((Header.int32(":stream-id", 8),), b"ok")


def test_decoder_checks_the_crc_of_a_discarded_payload() -> None:
    decoder = Decoder(max_payload_length=10)
    frame = bytearray(encode_message([], b"z" * 100))
    frame[50] ^= 0xFF
    with pytest.raises(ChecksumError):
        decoder.feed(bytes(frame))


def test_garbage_is_a_framing_error() -> None:
    with pytest.raises(FramingError):
        Decoder().feed(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
