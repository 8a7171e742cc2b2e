"""The bus interface every component is given.

A component never talks to Greengrass directly: it receives a :class:`Bus` in its
constructor. On a device (and under ``vla-edge up``) that is
:class:`vla_edge.bus.ipc.GreengrassIpcBus`; in unit tests it is
:class:`vla_edge.bus.memory.InMemoryBus`. Both deliver the same things:

* a published ``dict`` arrives as a ``dict`` (a Greengrass *JSON message*),
* published ``bytes`` arrive as ``bytes`` (a Greengrass *binary message*).

Handlers run on a transport thread and must not block for long.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from typing import Any, Literal

Payload = dict[str, Any] | bytes
MessageHandler = Callable[[str, Payload], None]
"""Called with (topic the message was published on, payload)."""
ConfigurationHandler = Callable[[tuple[str, ...]], None]
"""Called with the key path that changed (empty tuple: the whole configuration)."""
ValidationHandler = Callable[[dict[str, Any]], str | None]
"""Called with a proposed configuration; returns ``None`` to accept or a reason to reject."""
ComponentState = Literal["RUNNING", "ERRORED"]


class Subscription(abc.ABC):
    """Handle of an active subscription; ``close()`` ends it."""

    @abc.abstractmethod
    def close(self) -> None: ...


class Bus(abc.ABC):
    """Local pub/sub, configuration and lifecycle state for one component."""

    @abc.abstractmethod
    def publish(self, topic: str, payload: Payload) -> None:
        """Publish a JSON (dict) or binary (bytes) message to a local topic."""

    @abc.abstractmethod
    def subscribe(self, topic_filter: str, handler: MessageHandler) -> Subscription:
        """Subscribe to a topic; MQTT-style ``+`` and ``#`` wildcards are allowed."""

    @abc.abstractmethod
    def get_configuration(self, key_path: Sequence[str] = ()) -> Any:
        """Return this component's configuration (or the value at ``key_path``)."""

    @abc.abstractmethod
    def update_configuration(self, key_path: Sequence[str], value: dict[str, Any]) -> None:
        """Merge ``value`` into this component's configuration at ``key_path``."""

    @abc.abstractmethod
    def subscribe_to_configuration_update(
        self, handler: ConfigurationHandler, key_path: Sequence[str] = ()
    ) -> Subscription:
        """Call ``handler`` whenever this component's configuration changes."""

    @abc.abstractmethod
    def subscribe_to_validate_configuration_updates(self, handler: ValidationHandler) -> Subscription:
        """Let the component accept or reject a configuration before a deployment applies it."""

    @abc.abstractmethod
    def update_state(self, state: ComponentState) -> None:
        """Report this component's lifecycle state to the nucleus."""

    @abc.abstractmethod
    def close(self) -> None:
        """Close every subscription and the connection."""

    def __enter__(self) -> "Bus":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
