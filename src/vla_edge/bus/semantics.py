"""Greengrass semantics shared by the local core and the in-memory bus.

Topic filters follow local pub/sub (MQTT style); configuration updates merge as the
nucleus merges ``valueToMerge`` and deployment merge updates. Topics for AWS IoT
Core (the MQTT proxy) must also fit IoT Core's limits, which the nucleus checks
before a message leaves the device: at most 256 bytes and 7 forward slashes, and
a payload of at most 128 KiB.
"""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from vla_edge.errors import BusError


def validate_topic(topic: str) -> None:
    """A publish topic: non-empty, no wildcards."""
    if not topic:
        raise BusError("topic is empty: publish to a non-empty topic such as 'vla-edge/arm/joint_state'")
    if "+" in topic or "#" in topic:
        raise BusError(f"cannot publish to {topic!r}: '+' and '#' are only allowed in subscription filters")


def validate_filter(topic_filter: str) -> None:
    """A subscription filter: ``+`` fills one whole level, ``#`` only as the whole last level."""
    if not topic_filter:
        raise BusError("topic filter is empty: subscribe to a topic or a filter such as 'vla-edge/#'")
    levels = topic_filter.split("/")
    for index, level in enumerate(levels):
        if "#" in level and (level != "#" or index != len(levels) - 1):
            raise BusError(f"invalid filter {topic_filter!r}: '#' must be the whole last level")
        if "+" in level and level != "+":
            raise BusError(f"invalid filter {topic_filter!r}: '+' must fill a whole level")


def topic_matches(topic_filter: str, topic: str) -> bool:
    """True when ``topic`` matches ``topic_filter`` (``+`` one level, ``#`` this level and below)."""
    filter_levels = topic_filter.split("/")
    topic_levels = topic.split("/")
    for index, pattern in enumerate(filter_levels):
        if pattern == "#":
            return True
        if index >= len(topic_levels):
            return False
        if pattern != "+" and pattern != topic_levels[index]:
            return False
    return len(filter_levels) == len(topic_levels)


def deep_merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """A new dict: ``update`` merged into ``base``; mappings merge recursively, anything else (lists too) replaces."""
    merged = copy.deepcopy(dict(base))
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


IOT_CORE_MAX_TOPIC_BYTES = 256
IOT_CORE_MAX_SLASHES = 7
IOT_CORE_MAX_PAYLOAD = 128 * 1024
"""AWS IoT Core's message size limit; the nucleus's MQTT client refuses larger publishes."""
_BASIC_INGEST_PREFIX = "$aws/rules/"


def iot_core_topic_problem(topic: str, *, is_filter: bool = False) -> str | None:
    """Why ``topic`` cannot go to AWS IoT Core, or None when it can.

    The limits apply to the effective topic: for Basic Ingest (``$aws/rules/RULE/...``)
    the first three levels do not count, as in IoT Core.
    """
    if not topic:
        return "Topic must not be empty"
    if not is_filter and ("+" in topic or "#" in topic):
        return "Publish topics must not contain wildcard characters of '#' or '+'"
    effective = topic
    if topic.startswith(_BASIC_INGEST_PREFIX):
        effective = topic[len(_BASIC_INGEST_PREFIX):].partition("/")[2]
        if not effective:
            return "Effective direct ingest topic (without '$aws/rules/rule-name/' prefix) is empty"
    if effective.count("/") > IOT_CORE_MAX_SLASHES:
        return f"The request topic must have no more than {IOT_CORE_MAX_SLASHES} forward slashes (/)"
    if len(effective.encode("utf-8")) > IOT_CORE_MAX_TOPIC_BYTES:
        return f"The topic size of request must be no larger than {IOT_CORE_MAX_TOPIC_BYTES} bytes of UTF-8"
    if is_filter:
        try:
            validate_filter(topic)
        except BusError as exc:
            return str(exc)
    return None


def iot_core_payload(payload: Any) -> bytes:
    """The bytes a component's payload becomes on the wire to IoT Core: a dict as compact UTF-8 JSON."""
    if isinstance(payload, dict):
        return json.dumps(payload, separators=(",", ":"), allow_nan=False).encode("utf-8")
    if isinstance(payload, (bytes, bytearray, memoryview)):
        return bytes(payload)
    raise BusError(f"payload must be a dict or bytes, not {type(payload).__name__}")


def iot_core_publish(topic: str, payload: Any, qos: Any) -> bytes:
    """Check a publish to IoT Core as the nucleus would before sending it; returns the payload's bytes."""
    problem = iot_core_topic_problem(topic)
    if problem is not None:
        raise BusError(f"cannot publish to IoT Core topic {topic!r}: {problem}")
    if qos not in (0, 1) or isinstance(qos, bool):
        raise BusError(f"qos must be 0 (at most once) or 1 (at least once), got {qos!r}")
    body = iot_core_payload(payload)
    if len(body) > IOT_CORE_MAX_PAYLOAD:
        raise BusError(f"payload of {len(body)} bytes exceeds AWS IoT Core's limit of {IOT_CORE_MAX_PAYLOAD} bytes; "
                       "send a reference (e.g. an S3 key) instead")
    return body


@dataclass(frozen=True)
class IotCoreMessage:
    """One message a component published to AWS IoT Core (recorded locally: there is no cloud here)."""

    topic: str
    payload: bytes
    qos: int
    component: str
    retain: bool = False
    timestamp: float = 0.0
    """Seconds since the epoch when the core (or in-memory broker) accepted it."""

    def json(self) -> Any:
        """The payload parsed as JSON (a ValueError when it is not JSON)."""
        return json.loads(self.payload)

    def to_record(self) -> dict[str, Any]:
        """A JSON-clean record: the payload as ``json`` when it parses, else ``text``, else ``base64``."""
        record: dict[str, Any] = {"timestamp": self.timestamp, "component": self.component, "topic": self.topic,
                                  "qos": self.qos, "retain": self.retain}
        try:
            record["json"] = json.loads(self.payload)
        except ValueError:
            try:
                record["text"] = self.payload.decode("utf-8")
            except UnicodeDecodeError:
                record["base64"] = base64.b64encode(self.payload).decode("ascii")
        return record
