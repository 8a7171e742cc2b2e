"""An in-memory :class:`Bus` for unit tests of component logic (no sockets, no threads).

Messages are delivered synchronously in ``publish``. JSON payloads are round-tripped
through ``json`` so a test sees exactly what the IPC transport would deliver (and a
payload that is not JSON-serialisable fails here as it would on a device).
"""

from __future__ import annotations

import copy
import itertools
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from vla_edge.bus.base import (
    Bus,
    ComponentState,
    ConfigurationHandler,
    MessageHandler,
    Payload,
    Subscription,
    ValidationHandler,
)
from vla_edge.bus.semantics import deep_merge, topic_matches, validate_filter, validate_topic
from vla_edge.errors import BusError, ConfigurationError

log = logging.getLogger(__name__)


@dataclass
class _Entry:
    key: int
    topic_filter: str
    handler: MessageHandler


class _Closer(Subscription):
    def __init__(self, close: Any) -> None:
        self._close = close

    def close(self) -> None:
        self._close()


@dataclass
class InMemoryBroker:
    """Shared by several :class:`InMemoryBus` instances so they can talk to each other."""

    _subscribers: list[_Entry] = field(default_factory=list)
    _ids: itertools.count = field(default_factory=itertools.count)
    published: list[tuple[str, Payload]] = field(default_factory=list)

    def bus(self, configuration: dict[str, Any] | None = None) -> "InMemoryBus":
        return InMemoryBus(self, configuration)

    def _publish(self, topic: str, payload: Payload) -> None:
        validate_topic(topic)
        if isinstance(payload, dict):
            payload = json.loads(json.dumps(payload, allow_nan=True))
        elif not isinstance(payload, (bytes, bytearray)):
            raise BusError(f"payload must be a dict or bytes, not {type(payload).__name__}")
        else:
            payload = bytes(payload)
        self.published.append((topic, payload))
        for entry in list(self._subscribers):
            if topic_matches(entry.topic_filter, topic):
                entry.handler(topic, copy.deepcopy(payload) if isinstance(payload, dict) else payload)

    def _subscribe(self, topic_filter: str, handler: MessageHandler) -> Subscription:
        validate_filter(topic_filter)
        entry = _Entry(next(self._ids), topic_filter, handler)
        self._subscribers.append(entry)
        return _Closer(lambda: self._subscribers.remove(entry) if entry in self._subscribers else None)


class InMemoryBus(Bus):
    def __init__(self, broker: InMemoryBroker | None = None, configuration: dict[str, Any] | None = None) -> None:
        self.broker = broker or InMemoryBroker()
        self.configuration: dict[str, Any] = copy.deepcopy(configuration or {})
        self.states: list[ComponentState] = []
        self._config_handlers: list[ConfigurationHandler] = []
        self._validators: list[ValidationHandler] = []
        self._subscriptions: list[Subscription] = []

    def publish(self, topic: str, payload: Payload) -> None:
        self.broker._publish(topic, payload)

    def subscribe(self, topic_filter: str, handler: MessageHandler) -> Subscription:
        subscription = self.broker._subscribe(topic_filter, handler)
        self._subscriptions.append(subscription)
        return subscription

    def get_configuration(self, key_path: Sequence[str] = ()) -> Any:
        value: Any = self.configuration
        for key in key_path:
            if not isinstance(value, dict) or key not in value:
                raise ConfigurationError(f"configuration has no key {'/'.join(key_path)!r}")
            value = value[key]
        return copy.deepcopy(value)

    def update_configuration(self, key_path: Sequence[str], value: dict[str, Any]) -> None:
        for key in reversed(key_path):
            value = {key: value}
        self.configuration = deep_merge(self.configuration, value)
        for handler in list(self._config_handlers):
            handler(tuple(key_path))

    def subscribe_to_configuration_update(
        self, handler: ConfigurationHandler, key_path: Sequence[str] = ()
    ) -> Subscription:
        self._config_handlers.append(handler)
        return _Closer(lambda: self._config_handlers.remove(handler))

    def subscribe_to_validate_configuration_updates(self, handler: ValidationHandler) -> Subscription:
        self._validators.append(handler)
        return _Closer(lambda: self._validators.remove(handler))

    def propose_configuration(self, configuration: dict[str, Any]) -> str | None:
        """Test helper: ask validators as a deployment would; returns the first rejection reason."""
        for validator in self._validators:
            reason = validator(copy.deepcopy(configuration))
            if reason is not None:
                return reason
        return None

    def update_state(self, state: ComponentState) -> None:
        self.states.append(state)

    def close(self) -> None:
        for subscription in self._subscriptions:
            subscription.close()
        self._subscriptions.clear()

