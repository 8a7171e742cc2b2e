"""The MQTT proxy (PublishToIoTCore, SubscribeToIoTCore) without a cloud: what would go to AWS IoT Core is recorded.

On a device the nucleus forwards these to AWS IoT Core over its own MQTT
connection. Here there is no connection, so the core keeps every accepted publish
(topic, QoS, retain flag, payload, component) in a bounded in-memory record
(:meth:`IotCoreProxy.messages`) and, when given a file, appends it there as one
JSON line, so a developer can see exactly what a device would have sent.

As on the nucleus:

* Both operations are authorized by the recipe's ``accessControl`` under the
  ``aws.greengrass.ipc.mqttproxy`` service (operations
  ``aws.greengrass#PublishToIoTCore`` / ``aws.greengrass#SubscribeToIoTCore``,
  resources are MQTT topic filters with ``+`` and ``#``, ``*`` for any). A denial
  is UnauthorizedError ``Authorization failed with error ...`` followed by the
  usual ``Principal X is not authorized to perform ...`` sentence.
* Topics must fit IoT Core's limits (no wildcards in a publish topic, at most
  256 bytes and 7 slashes), checked before anything is recorded; a payload above
  IoT Core's 128 KiB is refused too. These are InvalidArgumentsError here.
* QoS is ``"0"`` or ``"1"`` (missing means 1, the nucleus's default).
* IoT Core delivers a publish to every matching subscription, the publisher's
  own included (MQTT has no "no local" by default), so a SubscribeToIoTCore
  stream gets local publishes that match it; :meth:`IotCoreProxy.deliver` plays a
  message coming from the cloud.

Everything except :meth:`IotCoreProxy.messages` runs on the core's event loop.
"""

from __future__ import annotations

import base64
import binascii
import collections
import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vla_edge.bus.semantics import IOT_CORE_MAX_PAYLOAD, IotCoreMessage, iot_core_topic_problem, topic_matches
from vla_edge.core.acl import AccessControl
from vla_edge.core.protocol import InvalidArgumentsError, Operation, Stats, UnauthorizedError
from vla_edge.core.rpc import Stream

log = logging.getLogger(__name__)

NS = "aws.greengrass#"
MQTT_PROXY_SERVICE = "aws.greengrass.ipc.mqttproxy"
PUBLISH_TO_IOT_CORE = NS + "PublishToIoTCore"
SUBSCRIBE_TO_IOT_CORE = NS + "SubscribeToIoTCore"
MESSAGE_EVENT = NS + "IoTCoreMessage"
RECORD_LIMIT = 1000
"""Messages kept in memory; the JSON-lines file keeps them all."""
QOS_VALUES = {"0": 0, "1": 1}


@dataclass(eq=False)
class _Subscription:
    topic_filter: str
    stream: Stream


class IotCoreProxy:
    """PublishToIoTCore and SubscribeToIoTCore against a local record instead of AWS IoT Core."""

    def __init__(self, acl: AccessControl, stats: Stats, log_file: Path | None = None,
                 limit: int = RECORD_LIMIT) -> None:
        self.acl = acl
        self.stats = stats
        self.log_file = log_file
        self._record: collections.deque[IotCoreMessage] = collections.deque(maxlen=limit)
        self._lock = threading.Lock()
        self._subscriptions: list[_Subscription] = []
        self.operations = {
            PUBLISH_TO_IOT_CORE: Operation(NS + "PublishToIoTCoreResponse", self.publish),
            SUBSCRIBE_TO_IOT_CORE: Operation(NS + "SubscribeToIoTCoreResponse", self.subscribe, streaming=True),
        }

    def messages(self) -> list[IotCoreMessage]:
        """The recorded publishes, oldest first (the last :data:`RECORD_LIMIT`). Thread-safe."""
        with self._lock:
            return list(self._record)

    # -- operations -----------------------------------------------------------------------------------

    def publish(self, stream: Stream, request: dict[str, Any]) -> dict[str, Any]:
        topic = request.get("topicName")
        if not isinstance(topic, str):
            raise InvalidArgumentsError("topicName is required")
        self._authorize(stream.principal, PUBLISH_TO_IOT_CORE, topic)
        problem = iot_core_topic_problem(topic)
        if problem is not None:
            raise InvalidArgumentsError(problem)
        qos = _qos(request.get("qos"))
        payload = _blob(request.get("payload"))
        if len(payload) > IOT_CORE_MAX_PAYLOAD:
            raise InvalidArgumentsError(f"payload of {len(payload)} bytes exceeds AWS IoT Core's limit of "
                                        f"{IOT_CORE_MAX_PAYLOAD} bytes")
        retain = bool(request.get("retain") or False)
        message = IotCoreMessage(topic, payload, qos, stream.principal, retain, time.time())
        with self._lock:
            self._record.append(message)
        self.stats.iot_core_published += 1
        log.info("%s published %d byte(s) to IoT Core topic %s (QoS %d; recorded, not sent: no cloud here)",
                 stream.principal, len(payload), topic, qos)
        self._append_to_file(message)
        self.deliver(topic, payload)
        return {}

    def subscribe(self, stream: Stream, request: dict[str, Any]) -> dict[str, Any]:
        topic_filter = request.get("topicName")
        if not isinstance(topic_filter, str):
            raise InvalidArgumentsError("topicName is required")
        self._authorize(stream.principal, SUBSCRIBE_TO_IOT_CORE, topic_filter)
        problem = iot_core_topic_problem(topic_filter, is_filter=True)
        if problem is not None:
            raise InvalidArgumentsError(problem)
        _qos(request.get("qos"))
        subscription = _Subscription(topic_filter, stream)
        self._subscriptions.append(subscription)
        stream.on_close.append(lambda: self._subscriptions.remove(subscription))
        log.info("%s subscribed to IoT Core topic filter %s", stream.principal, topic_filter)
        return {}

    def deliver(self, topic: str, payload: bytes) -> int:
        """Hand a message on ``topic`` to the matching SubscribeToIoTCore streams; returns how many got it."""
        body = json.dumps({"message": {"topicName": topic,
                                       "payload": base64.b64encode(payload).decode("ascii")}}).encode()
        delivered = 0
        for subscription in list(self._subscriptions):
            if topic_matches(subscription.topic_filter, topic) and subscription.stream.send_event(MESSAGE_EVENT, body):
                delivered += 1
        self.stats.iot_core_delivered += delivered
        return delivered

    # -- internals ------------------------------------------------------------------------------------

    def _authorize(self, principal: str, operation: str, topic: str) -> None:
        if not self.acl.is_authorized(principal, MQTT_PROXY_SERVICE, operation, topic):
            message = "Authorization failed with error " + self.acl.denial(principal, MQTT_PROXY_SERVICE, operation,
                                                                            topic)
            log.warning("%s", message)
            raise UnauthorizedError(message)

    def _append_to_file(self, message: IotCoreMessage) -> None:
        """One JSON line per message; a file that cannot be written is logged, never fails the publish."""
        if self.log_file is None:
            return
        line = json.dumps(message.to_record(), separators=(",", ":")) + "\n"
        try:
            fd = os.open(self.log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            with os.fdopen(fd, "a", encoding="utf-8") as handle:
                handle.write(line)
        except OSError as exc:
            log.warning("cannot append the IoT Core message to %s: %s", self.log_file, exc)


def _qos(value: Any) -> int:
    if value is None:
        return 1
    if value not in QOS_VALUES:
        raise InvalidArgumentsError(f"qos must be \"0\" (AT_MOST_ONCE) or \"1\" (AT_LEAST_ONCE), got {value!r}")
    return QOS_VALUES[value]


def _blob(value: Any) -> bytes:
    if value is None:
        return b""
    if not isinstance(value, str):
        raise InvalidArgumentsError("payload must be a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidArgumentsError("payload is not valid base64") from None
