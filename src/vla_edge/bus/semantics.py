"""Greengrass semantics shared by the local core and the in-memory bus.

Topic filters follow local pub/sub (MQTT style); configuration updates merge as the
nucleus merges ``valueToMerge`` and deployment merge updates.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
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
