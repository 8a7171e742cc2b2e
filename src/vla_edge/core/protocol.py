"""Event-stream RPC vocabulary shared by the connection layer and the operations.

What awscrt's client (``aws-c-event-stream``) and the nucleus's server
(``aws-iot-device-sdk-java-v2`` event-stream-rpc-server) do, and so what we do:

* Every frame carries int32 headers ``:message-type``, ``:message-flags`` and
  ``:stream-id``. Stream 0 carries connection messages (CONNECT, PING...), other
  ids carry one operation each; a stream's first message names it in the string
  header ``operation`` (e.g. ``aws.greengrass#PublishToTopic``).
* The first client message must be CONNECT with ``:version`` = ``0.1.0`` and the
  JSON payload ``{"authToken": SVCUID}``. The answer is CONNECT_ACK with flag
  CONNECTION_ACCEPTED, or CONNECT_ACK without it, after which the client closes
  the socket and raises ``AccessDeniedError``.
* PING is answered by PING_RESPONSE echoing the non-``:`` headers and the payload.
* Application messages carry ``:content-type: application/json`` and
  ``service-model-type`` naming the shape. A plain operation answers once with
  TERMINATE_STREAM; a streaming one answers without it, then sends events on the
  same stream until the client sends TERMINATE_STREAM.
* A modelled error is an APPLICATION_ERROR with TERMINATE_STREAM whose
  ``service-model-type`` is the error shape (``aws.greengrass#UnauthorizedError``)
  and whose JSON has ``message`` (what the SDK reads) plus the Java server's
  ``_message``/``_errorCode``/``_service``.
* An operation the server does not know gets APPLICATION_ERROR + TERMINATE_STREAM
  with ``{"error": "Unsupported Operation", ...}`` and *no* service-model-type;
  the Python SDK then fails the call with ``StreamClosedError``.
* Framing errors or out-of-protocol messages get a PROTOCOL_ERROR and the
  connection is closed, as ``aws-c-event-stream`` does.

Message types and flags are those of ``awscrt.eventstream.rpc``; the modelled
errors are the Greengrass error shapes the SDK maps to exception classes by their
``service-model-type`` (``aws.greengrass#UnauthorizedError`` ->
``awsiot.greengrasscoreipc.model.UnauthorizedError``). The SDK reads only the
``message`` field; ``_message``/``_errorCode``/``_service`` are added because the
nucleus's Java server serialises them too.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from vla_edge.core.rpc import Stream

RPC_VERSION = "0.1.0"
SERVICE_NAME = "aws.greengrass#GreengrassCoreIPC"
CONTENT_TYPE_JSON = "application/json"


class MessageType(enum.IntEnum):
    APPLICATION_MESSAGE = 0
    APPLICATION_ERROR = 1
    PING = 2
    PING_RESPONSE = 3
    CONNECT = 4
    CONNECT_ACK = 5
    PROTOCOL_ERROR = 6
    INTERNAL_ERROR = 7


class MessageFlag(enum.IntFlag):
    NONE = 0
    CONNECTION_ACCEPTED = 0x1
    TERMINATE_STREAM = 0x2


class IpcError(Exception):
    """A modelled Greengrass error; the SDK raises the class named by ``model_type``."""

    model_type: ClassVar[str] = "aws.greengrass#ServiceError"

    def __init__(self, message: str, **fields: Any) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields

    def payload(self) -> dict[str, Any]:
        code = self.model_type.split("#", 1)[1]
        return {"message": self.message, **self.fields, "_message": self.message, "_errorCode": code,
                "_service": SERVICE_NAME}


class ServiceError(IpcError):
    model_type = "aws.greengrass#ServiceError"


class UnauthorizedError(IpcError):
    model_type = "aws.greengrass#UnauthorizedError"


class ResourceNotFoundError(IpcError):
    model_type = "aws.greengrass#ResourceNotFoundError"


class InvalidArgumentsError(IpcError):
    model_type = "aws.greengrass#InvalidArgumentsError"


class FailedUpdateConditionCheckError(IpcError):
    model_type = "aws.greengrass#FailedUpdateConditionCheckError"


@dataclass
class Limits:
    """Per-connection resource limits (documented defaults; see :class:`vla_edge.core.server.LocalCore`)."""

    max_message_size: int = 10 * 1024 * 1024
    """Largest accepted application payload. Larger ones get InvalidArgumentsError on their stream."""
    max_frame_size: int = 24 * 1024 * 1024
    """Largest frame read (and discarded) at all; above it the connection is dropped."""
    max_queued_events: int = 1024
    max_queued_bytes: int = 64 * 1024 * 1024


@dataclass
class Stats:
    """Counters shared by all connections. Written on the core's event loop, read anywhere."""

    connections_accepted: int = 0
    connections_rejected: int = 0
    protocol_errors: int = 0
    oversized_messages: int = 0
    dropped_events: int = 0
    requests: int = 0
    errors_returned: int = 0
    published: int = 0
    delivered: int = 0
    iot_core_published: int = 0
    """Messages accepted by PublishToIoTCore (recorded locally; there is no cloud connection)."""
    iot_core_delivered: int = 0
    """IoT Core messages handed to SubscribeToIoTCore streams."""
    component_updates: int = 0
    """Component-update steps finished (post-update events sent)."""
    update_deferrals: int = 0
    """DeferComponentUpdate calls that asked for more time (recheckAfterMs > 0)."""

    def snapshot(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class Operation:
    """A served operation: ``handler(stream, request) -> response body``; streaming ones keep the stream open."""

    response_type: str
    handler: Callable[[Stream, dict[str, Any]], dict[str, Any]]
    streaming: bool = False


class Router:
    """What a connection needs from the core: who a token is, and the operation table."""

    operations: Mapping[str, Operation]

    def authenticate(self, token: str) -> str | None:  # pragma: no cover - interface
        raise NotImplementedError
