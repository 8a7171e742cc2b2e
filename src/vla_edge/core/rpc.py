"""Event-stream RPC, server side: one client connection of the local core.

Handshake, pings, per-operation streams, modelled errors and bounded output, as
the nucleus's event-stream server does them (the protocol facts are listed in
:mod:`vla_edge.core.protocol`), so the unmodified awsiotsdk client cannot tell
this core from a device.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import json
import logging
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

from vla_edge.core.eventstream import (
    Decoder,
    FramingError,
    Header,
    HeaderType,
    Message,
    OversizedMessage,
    encode_frame,
    encode_headers,
    encode_message,
)
from vla_edge.core.protocol import (
    CONTENT_TYPE_JSON,
    RPC_VERSION,
    InvalidArgumentsError,
    IpcError,
    Limits,
    MessageFlag,
    MessageType,
    Router,
    ServiceError,
    Stats,
)

log = logging.getLogger(__name__)


@dataclass(eq=False)
class Stream:
    """One operation's stream on one connection."""

    id: int
    operation: str
    connection: Connection
    on_close: list[Callable[[], None]] = field(default_factory=list)
    closed: bool = False
    _event_headers: dict[str, bytes] = field(default_factory=dict)

    @property
    def principal(self) -> str:
        assert self.connection.principal is not None
        return self.connection.principal

    def send_event(self, model_type: str, body: bytes) -> bool:
        """Queue a stream event; False when the stream is closed or the event was dropped (slow client)."""
        if self.closed:
            return False
        encoded = self._event_headers.get(model_type)
        if encoded is None:
            encoded = _app_headers(model_type, self.id, MessageType.APPLICATION_MESSAGE, 0)
            self._event_headers[model_type] = encoded
        return self.connection.enqueue(encode_frame(encoded, body), droppable=True)


def _app_headers(model_type: str | None, stream_id: int, kind: MessageType, flags: int) -> bytes:
    """Encoded headers of an application message: a cached prefix plus the stream id."""
    return _app_header_prefix(model_type, int(kind), flags) + encode_headers([Header.int32(":stream-id", stream_id)])


@functools.lru_cache(maxsize=256)
def _app_header_prefix(model_type: str | None, kind: int, flags: int) -> bytes:
    headers = [Header.string(":content-type", CONTENT_TYPE_JSON)]
    if model_type is not None:
        headers.append(Header.string("service-model-type", model_type))
    headers += [Header.int32(":message-type", kind), Header.int32(":message-flags", flags)]
    return encode_headers(headers)


class ProtocolViolation(Exception):
    """A well-framed message that breaks the RPC protocol; the connection is answered and dropped."""


class Connection(asyncio.Protocol):
    """Serves one client socket: handshake, pings, streams, and bounded output.

    An ``asyncio.Protocol`` rather than a stream reader/writer pair: a request is
    decoded, handled and answered within the one event-loop callback that received
    it, which keeps the core's share of a round trip small.

    Output goes straight to the transport while the transport's buffer is below its
    high-water mark. Past it (the client is not reading) frames wait in a queue;
    responses always, events only up to ``max_queued_events``/``max_queued_bytes``.
    Beyond that, events for *this* client are dropped and counted, so a stalled
    subscriber can never make a publisher or other subscribers wait.
    """

    WRITE_HIGH_WATER = 4 * 1024 * 1024
    LINGER_S = 5.0

    def __init__(self, router: Router, limits: Limits, stats: Stats,
                 registry: set[Connection] | None = None) -> None:
        self.router = router
        self.limits = limits
        self.stats = stats
        self.registry = registry if registry is not None else set()
        self.principal: str | None = None
        self.peer = "peer unknown"
        self.dropped = 0
        self.streams: dict[int, Stream] = {}
        self.transport: asyncio.Transport | None = None
        self._last_stream_id = 0
        self._decoder = Decoder(max_message_length=limits.max_frame_size, max_payload_length=limits.max_message_size)
        self._queue: collections.deque[bytes] = collections.deque()
        self._queued_bytes = 0
        self._paused = False
        self._closing = False
        self._rejected = False

    def __repr__(self) -> str:
        return f"<Connection {self.principal or 'unauthenticated'} {self.peer}>"

    # -- asyncio.Protocol -------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.set_write_buffer_limits(high=self.WRITE_HIGH_WATER)
        self.peer = _peer_description(transport)
        self.registry.add(self)

    def data_received(self, data: bytes) -> None:
        if self._closing or self._rejected:
            return
        try:
            messages = self._decoder.feed(data)
        except FramingError as exc:
            self._protocol_error(f"{type(exc).__name__}: {exc}")
            return
        for message in messages:
            try:
                self._on_message(message)
            except ProtocolViolation as exc:
                self._protocol_error(str(exc))
            if self._closing or self._rejected:
                return

    def eof_received(self) -> bool:
        if not self._decoder.at_boundary and not self._closing:
            self._protocol_error("connection closed in the middle of a frame", reply=False)
        return False  # let the transport close

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        self._queue.clear()
        self._release_streams()
        self.registry.discard(self)
        if self.principal is not None:
            log.info("%s disconnected (%s)%s", self.principal, self.peer, f": {exc}" if exc else "")

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        assert self.transport is not None
        while self._queue and not self._paused:
            frame = self._queue.popleft()
            self._queued_bytes -= len(frame)
            self.transport.write(frame)

    # -- control ----------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop reading; the transport flushes what it holds, then closes."""
        self._closing = True
        if self.transport is not None:
            self.transport.close()

    def enqueue(self, frame: bytes, *, droppable: bool) -> bool:
        """Send a frame. Events are ``droppable``: past the queue bounds they are counted and discarded."""
        if self._closing or self.transport is None:
            return False
        if not self._paused and not self._queue:
            self.transport.write(frame)
            return True
        if droppable and (len(self._queue) >= self.limits.max_queued_events
                          or self._queued_bytes + len(frame) > self.limits.max_queued_bytes):
            self.dropped += 1
            self.stats.dropped_events += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.warning("%r is not reading fast enough: %d event(s) dropped so far (queue %d frames, %d bytes)",
                            self, self.dropped, len(self._queue), self._queued_bytes)
            return False
        self._queue.append(frame)
        self._queued_bytes += len(frame)
        return True

    # -- incoming ---------------------------------------------------------------------------------

    def _on_message(self, message: Message | OversizedMessage) -> None:
        kind, flags, stream_id = _metadata(message)
        if self.principal is None:
            if kind != MessageType.CONNECT or stream_id != 0:
                raise ProtocolViolation(f"expected CONNECT as the first message, got {_name(kind)}")
            self._on_connect(message)
            return
        if stream_id == 0:
            if kind == MessageType.PING:
                echo = [h for h in message.headers if not h.name.startswith(":")]
                body = message.payload if isinstance(message, Message) else b""
                self._send_protocol(MessageType.PING_RESPONSE, 0, echo, body)
            elif kind == MessageType.PING_RESPONSE:
                pass
            elif kind in (MessageType.PROTOCOL_ERROR, MessageType.INTERNAL_ERROR):
                log.warning("%r reported %s: %r", self, _name(kind), _payload_text(message))
                self.close()
            else:
                raise ProtocolViolation(f"{_name(kind)} is not valid on stream 0 after CONNECT")
            return
        if kind not in (MessageType.APPLICATION_MESSAGE, MessageType.APPLICATION_ERROR):
            raise ProtocolViolation(f"{_name(kind)} is only valid on stream 0, got it on stream {stream_id}")
        stream = self.streams.get(stream_id)
        if stream is None:
            if stream_id <= self._last_stream_id:
                return  # a late message for a stream that already ended; aws-c-event-stream ignores these too
            operation = message.header("operation")
            if operation is None or operation.type != HeaderType.STRING:
                raise ProtocolViolation(f"new stream {stream_id} has no 'operation' string header")
            self._last_stream_id = stream_id
            if flags & MessageFlag.TERMINATE_STREAM:
                return  # opened and closed at once: nothing to do, as the Java server does
            stream = Stream(stream_id, operation.value, self)
            self.streams[stream_id] = stream
            self._on_request(stream, message)
            return
        if flags & MessageFlag.TERMINATE_STREAM:
            self._release(stream)
        elif isinstance(message, OversizedMessage):
            self._on_request(stream, message)
        # Otherwise: a client stream event. No served operation takes streaming input, so it is ignored.

    def _on_connect(self, message: Message | OversizedMessage) -> None:
        version = message.header(":version")
        token = None
        if isinstance(message, Message):
            try:
                body = json.loads(message.payload or b"{}")
                token = body.get("authToken") if isinstance(body, dict) else None
            except ValueError:
                token = None
        principal = None
        if version is None or version.value != RPC_VERSION:
            reason = f"client RPC version {getattr(version, 'value', None)!r} is not {RPC_VERSION!r}"
        elif not isinstance(token, str) or not token:
            reason = "no authToken in the CONNECT payload"
        else:
            principal = self.router.authenticate(token)
            reason = "unknown authToken (SVCUID)"
        if principal is None:
            self.stats.connections_rejected += 1
            log.warning("rejected IPC connection from %s: %s", self.peer, reason)
            self._send_protocol(MessageType.CONNECT_ACK, 0, [], b"")
            # Let the client hang up first: closing right after the ACK races awscrt, which may then
            # report a generic "socket closed" instead of AccessDeniedError. It closes as soon as it
            # reads the rejection; the timer only covers clients that never do.
            self._rejected = True
            assert self.transport is not None
            asyncio.get_running_loop().call_later(self.LINGER_S, self.transport.close)
            return
        self.principal = principal
        self.stats.connections_accepted += 1
        log.info("%s connected (%s)", principal, self.peer)
        self._send_protocol(MessageType.CONNECT_ACK, MessageFlag.CONNECTION_ACCEPTED, [], b"")

    def _on_request(self, stream: Stream, message: Message | OversizedMessage) -> None:
        self.stats.requests += 1
        if isinstance(message, OversizedMessage):
            self.stats.oversized_messages += 1
            log.warning("%r sent a %d-byte %s payload; the limit is %d bytes", self, message.payload_length,
                        stream.operation, self.limits.max_message_size)
            self.send_error(stream, InvalidArgumentsError(
                f"message payload of {message.payload_length} bytes exceeds the core's limit of "
                f"{self.limits.max_message_size} bytes; send large data out of band (e.g. a file path)"))
            return
        operation = self.router.operations.get(stream.operation)
        if operation is None:
            log.warning("%r called unsupported operation %s", self, stream.operation)
            unsupported = {"error": "Unsupported Operation",
                           "message": f"{stream.operation} is an unsupported operation."}
            self._send_stream(stream, None, MessageType.APPLICATION_ERROR, json.dumps(unsupported).encode(),
                              terminate=True)
            return
        try:
            request = json.loads(message.payload) if message.payload else {}
        except ValueError as exc:
            self.send_error(stream, InvalidArgumentsError(f"{stream.operation} request is not valid JSON: {exc}"))
            return
        try:
            if not isinstance(request, dict):
                raise InvalidArgumentsError(f"{stream.operation} request must be a JSON object")
            response = operation.handler(stream, request)
        except IpcError as exc:
            self.send_error(stream, exc)
        except Exception as exc:  # the nucleus turns unexpected failures into ServiceError too
            log.exception("%s failed for %s", stream.operation, self.principal)
            self.send_error(stream, ServiceError(f"{stream.operation} failed: {exc}"))
        else:
            body = json.dumps(response, separators=(",", ":")).encode()
            self._send_stream(stream, operation.response_type, MessageType.APPLICATION_MESSAGE, body,
                              terminate=not operation.streaming)

    # -- outgoing ---------------------------------------------------------------------------------

    def send_error(self, stream: Stream, error: IpcError) -> None:
        """Answer ``stream`` with a modelled error and end it."""
        self.stats.errors_returned += 1
        log.debug("%r %s -> %s: %s", self, stream.operation, error.model_type, error.message)
        body = json.dumps(error.payload()).encode()
        self._send_stream(stream, error.model_type, MessageType.APPLICATION_ERROR, body, terminate=True)

    def _send_stream(self, stream: Stream, model_type: str | None, kind: MessageType, body: bytes,
                     *, terminate: bool) -> None:
        if stream.closed:
            return
        flags = MessageFlag.TERMINATE_STREAM if terminate else 0
        self.enqueue(encode_frame(_app_headers(model_type, stream.id, kind, flags), body), droppable=False)
        if terminate:
            self._release(stream)

    def _send_protocol(self, kind: MessageType, flags: int, headers: list[Header], body: bytes) -> None:
        headers = headers + [Header.int32(":message-type", kind), Header.int32(":message-flags", flags),
                             Header.int32(":stream-id", 0)]
        self.enqueue(encode_message(headers, body), droppable=False)

    def _protocol_error(self, reason: str, *, reply: bool = True) -> None:
        self.stats.protocol_errors += 1
        log.warning("protocol error from %r: %s; closing the connection", self, reason)
        if reply:
            self._send_protocol(MessageType.PROTOCOL_ERROR, 0, [Header.string(":content-type", CONTENT_TYPE_JSON)],
                                json.dumps({"message": reason}).encode())
        self.close()

    def _release(self, stream: Stream) -> None:
        if stream.closed:
            return
        stream.closed = True
        self.streams.pop(stream.id, None)
        for callback in stream.on_close:
            try:
                callback()
            except Exception:
                log.exception("cleanup of %s stream %d failed", stream.operation, stream.id)

    def _release_streams(self) -> None:
        for stream in list(self.streams.values()):
            self._release(stream)


def _metadata(message: Message | OversizedMessage) -> tuple[int, int, int]:
    values = []
    for name in (":message-type", ":message-flags", ":stream-id"):
        header = message.header(name)
        if header is None or header.type != HeaderType.INT32:
            raise ProtocolViolation(f"message lacks the int32 header {name!r}")
        values.append(header.value)
    kind, flags, stream_id = values
    if stream_id < 0:
        raise ProtocolViolation(f"negative stream id {stream_id}")
    return kind, flags, stream_id


def _name(kind: int) -> str:
    try:
        return MessageType(kind).name
    except ValueError:
        return f"message type {kind}"


def _payload_text(message: Message | OversizedMessage) -> str:
    if isinstance(message, OversizedMessage):
        return f"<{message.payload_length} bytes>"
    return message.payload[:500].decode("utf-8", "replace")


def _peer_description(transport: asyncio.BaseTransport) -> str:
    """``pid N uid U`` from SO_PEERCRED where available: which local process is on the other end."""
    sock = transport.get_extra_info("socket")
    peercred = getattr(socket, "SO_PEERCRED", None)
    if sock is None or peercred is None:
        return "peer unknown"
    try:
        pid, uid, _gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, peercred, struct.calcsize("3i")))
    except OSError:
        return "peer unknown"
    return f"pid {pid} uid {uid}"
