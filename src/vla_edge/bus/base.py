"""The bus interface every component is given.

A component never talks to Greengrass directly: it receives a :class:`Bus` in its
constructor. On a device (and under ``vla-edge up``) that is
:class:`vla_edge.bus.ipc.GreengrassIpcBus`; in unit tests it is
:class:`vla_edge.bus.memory.InMemoryBus`. Both deliver the same things:

* a published ``dict`` arrives as a ``dict`` (a Greengrass *JSON message*),
* published ``bytes`` arrive as ``bytes`` (a Greengrass *binary message*).

Besides local pub/sub and configuration, a component can hold back Greengrass
deployments while it must not be disturbed (:meth:`Bus.subscribe_to_component_updates`
and :meth:`Bus.defer_component_update`, for components whose deployment uses the
NOTIFY_COMPONENTS update policy) and send messages to AWS IoT Core
(:meth:`Bus.publish_to_iot_core`, which needs an ``aws.greengrass.ipc.mqttproxy``
policy in the recipe).

Handlers run on a transport thread and must not block for long.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

Payload = dict[str, Any] | bytes
MessageHandler = Callable[[str, Payload], None]
"""Called with (topic the message was published on, payload)."""
ConfigurationHandler = Callable[[tuple[str, ...]], None]
"""Called with the key path that changed (empty tuple: the whole configuration)."""
ValidationHandler = Callable[[dict[str, Any]], str | None]
"""Called with a proposed configuration; returns ``None`` to accept or a reason to reject."""
ComponentState = Literal["RUNNING", "ERRORED"]
QoS = Literal[0, 1]
"""MQTT QoS towards AWS IoT Core: 0 at most once, 1 at least once (the nucleus's default)."""


@dataclass(frozen=True)
class ComponentUpdateEvent:
    """A deployment is about to update components (``pre``), or has done so (``post``).

    On ``pre`` the component answers with :meth:`Bus.defer_component_update`: a positive
    ``recheck_after_ms`` asks to be asked again that much later, 0 lets the update go ahead
    (not answering does too, once the deployment's timeout has passed).
    """

    kind: Literal["pre", "post"]
    deployment_id: str
    is_ggc_restarting: bool = False
    """Only on ``pre``: the update restarts the Greengrass nucleus (and so every component)."""


ComponentUpdateHandler = Callable[[ComponentUpdateEvent], None]


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
    def subscribe_to_component_updates(self, handler: ComponentUpdateHandler) -> Subscription:
        """Be told before and after a deployment updates components (see :class:`ComponentUpdateEvent`)."""

    @abc.abstractmethod
    def defer_component_update(self, deployment_id: str, message: str | None = None,
                               recheck_after_ms: int = 0) -> None:
        """Answer the pre-update event of ``deployment_id``: defer it by ``recheck_after_ms``, or 0 to let it go.

        Only valid while that deployment waits for this component's answer; otherwise a BusError.
        """

    @abc.abstractmethod
    def publish_to_iot_core(self, topic: str, payload: Payload, qos: QoS = 1) -> None:
        """Publish to AWS IoT Core over the nucleus's MQTT connection; a dict is sent as UTF-8 JSON.

        The topic must fit IoT Core (no wildcards, at most 256 bytes and 7 slashes) and the payload
        128 KiB; the recipe must grant ``aws.greengrass#PublishToIoTCore`` on the topic (AccessDenied).
        """

    @abc.abstractmethod
    def close(self) -> None:
        """Close every subscription and the connection."""

    def __enter__(self) -> "Bus":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
