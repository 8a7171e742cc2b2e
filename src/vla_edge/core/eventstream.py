"""AWS event-stream message codec: the framing under Greengrass IPC (event-stream RPC).

One message on the wire is::

    prelude   total length (uint32 BE) | headers length (uint32 BE) | CRC32 of those 8 bytes
    headers   repeated: name length (uint8) | name (utf-8) | value type (uint8) | value
    payload   total - headers - 16 bytes
    trailer   CRC32 of every preceding byte of the message (uint32 BE)

All integers are big-endian and signed where they are values. The CRC is the
ordinary IEEE CRC32 (``zlib.crc32``). Limits follow ``aws-c-event-stream``, the
library inside awscrt that the SDK client uses: header names are at most 127
bytes, the headers section at most 128 KiB, and a message at most 16 MiB
(some awscrt builds allow 24 MiB, so the decoder's cap is configurable).

We write our own codec instead of importing the SDK's (awscrt has none exposed
in Python) or botocore's (decoder only) so that the local core has no AWS SDK
dependency and so that a malformed frame becomes a precise, countable error.
"""

from __future__ import annotations

import enum
import struct
import uuid
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from vla_edge.errors import CoreError

PRELUDE_LENGTH = 12
TRAILER_LENGTH = 4
MIN_MESSAGE_LENGTH = PRELUDE_LENGTH + TRAILER_LENGTH
MAX_HEADER_NAME_LENGTH = 127
MAX_HEADERS_LENGTH = 128 * 1024
PROTOCOL_MAX_MESSAGE_LENGTH = 16 * 1024 * 1024
"""``AWS_EVENT_STREAM_MAX_MESSAGE_SIZE`` in aws-c-event-stream."""

_PRELUDE = struct.Struct(">III")
_U32 = struct.Struct(">I")


class FramingError(CoreError):
    """The byte stream is not valid event-stream framing; the connection cannot resynchronise."""


class ChecksumError(FramingError):
    """A prelude or message CRC32 does not match the bytes received."""


class TruncatedFrameError(FramingError):
    """A frame ends before the length its prelude announces."""


class FrameTooLargeError(FramingError):
    """A prelude announces a message larger than the decoder accepts."""


class HeaderError(FramingError):
    """The headers section cannot be parsed (bad type, overrun, bad UTF-8)."""


class HeaderType(enum.IntEnum):
    """Header value types (same numbering as ``awscrt.eventstream.HeaderType``)."""

    BOOL_TRUE = 0
    BOOL_FALSE = 1
    BYTE = 2
    INT16 = 3
    INT32 = 4
    INT64 = 5
    BYTE_BUF = 6
    STRING = 7
    TIMESTAMP = 8
    """int64 on the wire; milliseconds since the Unix epoch by the event-stream spec. Kept as the raw int."""
    UUID = 9


_FIXED: dict[HeaderType, struct.Struct] = {
    HeaderType.BYTE: struct.Struct(">b"),
    HeaderType.INT16: struct.Struct(">h"),
    HeaderType.INT32: struct.Struct(">i"),
    HeaderType.INT64: struct.Struct(">q"),
    HeaderType.TIMESTAMP: struct.Struct(">q"),
}
_LEN16 = struct.Struct(">H")


class Header(NamedTuple):
    """One typed header. Build with the classmethods so the value matches the type.

    A NamedTuple rather than a dataclass: thousands are built per second on the hot path.
    """

    name: str
    value: Any
    type: HeaderType

    @classmethod
    def bool(cls, name: str, value: bool) -> Header:
        return cls(name, bool(value), HeaderType.BOOL_TRUE if value else HeaderType.BOOL_FALSE)

    @classmethod
    def byte(cls, name: str, value: int) -> Header:
        return cls(name, int(value), HeaderType.BYTE)

    @classmethod
    def int16(cls, name: str, value: int) -> Header:
        return cls(name, int(value), HeaderType.INT16)

    @classmethod
    def int32(cls, name: str, value: int) -> Header:
        return cls(name, int(value), HeaderType.INT32)

    @classmethod
    def int64(cls, name: str, value: int) -> Header:
        return cls(name, int(value), HeaderType.INT64)

    @classmethod
    def byte_buf(cls, name: str, value: bytes) -> Header:
        return cls(name, bytes(value), HeaderType.BYTE_BUF)

    @classmethod
    def string(cls, name: str, value: str) -> Header:
        return cls(name, str(value), HeaderType.STRING)

    @classmethod
    def timestamp(cls, name: str, value: int) -> Header:
        return cls(name, int(value), HeaderType.TIMESTAMP)

    @classmethod
    def uuid(cls, name: str, value: uuid.UUID) -> Header:
        return cls(name, value, HeaderType.UUID)


@dataclass(frozen=True)
class Message:
    """A decoded message: its headers in wire order and its payload."""

    headers: tuple[Header, ...]
    payload: bytes

    def header(self, name: str) -> Header | None:
        """The first header called ``name`` (case-sensitive, as the RPC layer compares), or None."""
        for header in self.headers:
            if header.name == name:
                return header
        return None


@dataclass(frozen=True)
class OversizedMessage:
    """A well-framed message whose payload exceeded the decoder's payload limit; the payload was discarded."""

    headers: tuple[Header, ...]
    payload_length: int

    def header(self, name: str) -> Header | None:
        for header in self.headers:
            if header.name == name:
                return header
        return None


def encode_headers(headers: Iterable[Header]) -> bytes:
    """Serialise headers; raises ``ValueError`` for values that do not fit their type."""
    out = bytearray()
    for header in headers:
        name = header.name.encode("utf-8")
        if not 0 < len(name) <= MAX_HEADER_NAME_LENGTH:
            raise ValueError(f"header name {header.name!r} must be 1..{MAX_HEADER_NAME_LENGTH} bytes")
        out.append(len(name))
        out += name
        out.append(int(header.type))
        kind = header.type
        if kind in (HeaderType.BOOL_TRUE, HeaderType.BOOL_FALSE):
            continue
        if kind in _FIXED:
            try:
                out += _FIXED[kind].pack(header.value)
            except struct.error as exc:
                raise ValueError(f"header {header.name!r}: {header.value!r} does not fit {kind.name}") from exc
        elif kind in (HeaderType.BYTE_BUF, HeaderType.STRING):
            raw = header.value.encode("utf-8") if kind is HeaderType.STRING else bytes(header.value)
            if len(raw) > 0xFFFF:
                raise ValueError(f"header {header.name!r}: value of {len(raw)} bytes exceeds 65535")
            out += _LEN16.pack(len(raw))
            out += raw
        elif kind is HeaderType.UUID:
            out += header.value.bytes
        else:  # pragma: no cover - HeaderType is closed
            raise ValueError(f"unknown header type {kind!r}")
    return bytes(out)


def encode_message(headers: Sequence[Header], payload: bytes = b"") -> bytes:
    """One complete frame (prelude, headers, payload, trailer CRC)."""
    return encode_frame(encode_headers(headers), payload)


def encode_frame(encoded: bytes, payload: bytes) -> bytes:
    """A frame from an already-encoded headers section (lets a sender reuse per-stream headers)."""
    if len(encoded) > MAX_HEADERS_LENGTH:
        raise ValueError(f"headers of {len(encoded)} bytes exceed the {MAX_HEADERS_LENGTH}-byte limit")
    total = MIN_MESSAGE_LENGTH + len(encoded) + len(payload)
    prelude = struct.pack(">II", total, len(encoded))
    prelude += _U32.pack(zlib.crc32(prelude))
    crc = zlib.crc32(payload, zlib.crc32(encoded, zlib.crc32(prelude)))
    return b"".join((prelude, encoded, payload, _U32.pack(crc)))


_TYPE_BY_CODE = {kind.value: kind for kind in HeaderType}
_FIXED_BY_CODE = {kind.value: codec for kind, codec in _FIXED.items()}
_STRING_CODE = HeaderType.STRING.value
_BYTE_BUF_CODE = HeaderType.BYTE_BUF.value
_UUID_CODE = HeaderType.UUID.value


def decode_headers(data: bytes | memoryview) -> tuple[Header, ...]:
    """Parse a complete headers section.

    Written for speed (every request pays for it): plain bytes slicing, table lookups
    instead of enum construction.
    """
    data = bytes(data)
    headers: list[Header] = []
    pos = 0
    end = len(data)
    try:
        while pos < end:
            name_len = data[pos]
            name_end = pos + 1 + name_len
            if name_len == 0 or name_end >= end:
                raise HeaderError(f"header name length {name_len} at offset {pos} overruns the headers")
            name = data[pos + 1 : name_end].decode("utf-8")
            code = data[name_end]
            kind = _TYPE_BY_CODE.get(code)
            if kind is None:
                raise HeaderError(f"header {name!r} has unknown value type {code}")
            pos = name_end + 1
            value: Any
            if code == _STRING_CODE or code == _BYTE_BUF_CODE:
                if pos + 2 > end:
                    raise HeaderError(f"header {name!r} length overruns the headers")
                length = (data[pos] << 8) | data[pos + 1]
                pos += 2
                if pos + length > end:
                    raise HeaderError(f"header {name!r} value of {length} bytes overruns the headers")
                value = data[pos : pos + length]
                if code == _STRING_CODE:
                    value = value.decode("utf-8")
                pos += length
            elif code in _FIXED_BY_CODE:
                codec = _FIXED_BY_CODE[code]
                if pos + codec.size > end:
                    raise HeaderError(f"header {name!r} value overruns the headers")
                (value,) = codec.unpack_from(data, pos)
                pos += codec.size
            elif code == _UUID_CODE:
                if pos + 16 > end:
                    raise HeaderError(f"header {name!r} value overruns the headers")
                value = uuid.UUID(bytes=data[pos : pos + 16])
                pos += 16
            else:  # BOOL_TRUE / BOOL_FALSE carry no value bytes
                value = kind is HeaderType.BOOL_TRUE
            headers.append(Header(name, value, kind))
    except UnicodeDecodeError as exc:
        raise HeaderError(f"header is not valid UTF-8: {exc}") from exc
    return tuple(headers)


def _parse_prelude(prelude: bytes | memoryview, max_length: int) -> tuple[int, int]:
    total, headers_len, prelude_crc = _PRELUDE.unpack_from(prelude, 0)
    actual = zlib.crc32(prelude[:8])
    if actual != prelude_crc:
        raise ChecksumError(f"prelude CRC mismatch: expected 0x{prelude_crc:08x}, computed 0x{actual:08x}")
    if total < MIN_MESSAGE_LENGTH:
        raise FramingError(f"message length {total} is shorter than the {MIN_MESSAGE_LENGTH}-byte minimum")
    if total > max_length:
        raise FrameTooLargeError(f"message of {total} bytes exceeds the {max_length}-byte limit")
    if headers_len > MAX_HEADERS_LENGTH or headers_len > total - MIN_MESSAGE_LENGTH:
        raise FramingError(f"headers length {headers_len} is impossible for a {total}-byte message")
    return total, headers_len


def decode_message(data: bytes) -> Message:
    """Decode exactly one complete frame; raises a :class:`FramingError` subclass on any defect."""
    if len(data) < PRELUDE_LENGTH:
        raise TruncatedFrameError(f"{len(data)} bytes is shorter than the {PRELUDE_LENGTH}-byte prelude")
    total, headers_len = _parse_prelude(data, 0xFFFFFFFF)
    if len(data) < total:
        raise TruncatedFrameError(f"frame announces {total} bytes but only {len(data)} were given")
    if len(data) > total:
        raise FramingError(f"{len(data) - total} bytes follow the {total}-byte frame")
    return _decode_body(memoryview(data), total, headers_len)


def _decode_body(frame: memoryview, total: int, headers_len: int) -> Message:
    (expected,) = _U32.unpack_from(frame, total - TRAILER_LENGTH)
    actual = zlib.crc32(frame[: total - TRAILER_LENGTH])
    if actual != expected:
        raise ChecksumError(f"message CRC mismatch: expected 0x{expected:08x}, computed 0x{actual:08x}")
    headers = decode_headers(frame[PRELUDE_LENGTH : PRELUDE_LENGTH + headers_len])
    payload = bytes(frame[PRELUDE_LENGTH + headers_len : total - TRAILER_LENGTH])
    return Message(headers, payload)


class Decoder:
    """Incremental decoder: feed it bytes as they arrive, get whole messages back.

    ``max_payload_length`` (optional) makes messages with a larger payload come back as
    :class:`OversizedMessage`: their headers are parsed (so the caller can answer on
    the right stream) and the payload is discarded while it streams in, CRC still
    checked, instead of being buffered. ``max_message_length`` is the hard cap: a
    larger announced frame is a :class:`FrameTooLargeError`, since no honest client
    sends one and buffering it would let a peer exhaust memory.

    After a :class:`FramingError` the decoder is poisoned: event-stream has no resync
    marker, so the caller must drop the connection.
    """

    def __init__(
        self,
        max_message_length: int = PROTOCOL_MAX_MESSAGE_LENGTH,
        max_payload_length: int | None = None,
    ) -> None:
        self.max_message_length = max_message_length
        self.max_payload_length = max_payload_length
        self._buffer = bytearray()
        self._failed: FramingError | None = None
        # Set while discarding an oversized payload.
        self._skip_headers: tuple[Header, ...] = ()
        self._skip_remaining = 0
        self._skip_crc = 0
        self._skip_payload_length = 0
        self._skipping = False

    @property
    def at_boundary(self) -> bool:
        """True when no partial frame is pending: a peer closing now closed cleanly."""
        return not self._buffer and not self._skipping

    def feed(self, data: bytes) -> list[Message | OversizedMessage]:
        """Consume ``data``; return every message it completes (possibly none)."""
        if self._failed is not None:
            raise self._failed
        self._buffer += data
        out: list[Message | OversizedMessage] = []
        try:
            while True:
                if self._skipping:
                    done = self._continue_skip()
                    if done is None:
                        break
                    out.append(done)
                    continue
                if len(self._buffer) < PRELUDE_LENGTH:
                    break
                total, headers_len = _parse_prelude(bytes(self._buffer[:PRELUDE_LENGTH]), self.max_message_length)
                payload_len = total - MIN_MESSAGE_LENGTH - headers_len
                if self.max_payload_length is not None and payload_len > self.max_payload_length:
                    if not self._start_skip(total, headers_len, payload_len):
                        break
                    continue
                if len(self._buffer) < total:
                    break
                frame = memoryview(self._buffer)
                try:
                    message = _decode_body(frame, total, headers_len)
                finally:
                    frame.release()
                del self._buffer[:total]
                out.append(message)
        except FramingError as exc:
            self._failed = exc
            raise
        return out

    def _start_skip(self, total: int, headers_len: int, payload_len: int) -> bool:
        head = PRELUDE_LENGTH + headers_len
        if len(self._buffer) < head:
            return False
        self._skip_headers = decode_headers(bytes(self._buffer[PRELUDE_LENGTH:head]))
        self._skip_crc = zlib.crc32(self._buffer[:head])
        self._skip_remaining = total - head  # payload + trailer
        self._skip_payload_length = payload_len
        self._skipping = True
        del self._buffer[:head]
        return True

    def _continue_skip(self) -> OversizedMessage | None:
        payload_left = self._skip_remaining - TRAILER_LENGTH
        if payload_left > 0:
            take = min(payload_left, len(self._buffer))
            if take:
                self._skip_crc = zlib.crc32(self._buffer[:take], self._skip_crc)
                del self._buffer[:take]
                self._skip_remaining -= take
            if self._skip_remaining > TRAILER_LENGTH:
                return None
        if len(self._buffer) < TRAILER_LENGTH:
            return None
        (expected,) = _U32.unpack_from(self._buffer, 0)
        del self._buffer[:TRAILER_LENGTH]
        self._skipping = False
        if expected != self._skip_crc:
            raise ChecksumError(
                f"message CRC mismatch: expected 0x{expected:08x}, computed 0x{self._skip_crc:08x}"
            )
        return OversizedMessage(self._skip_headers, self._skip_payload_length)
