"""An in-memory :class:`Bus` for unit tests of component logic (no sockets, no threads).

Messages are delivered synchronously in ``publish``. JSON payloads are round-tripped
through ``json`` so a test sees exactly what the IPC transport would deliver (and a
payload that is not JSON-serialisable fails here as it would on a device).

The broker also plays the parts of the nucleus a unit test needs to drive:

* a deployment's component-update step: :meth:`InMemoryBroker.start_component_update`
  sends the pre-update event and returns an :class:`InMemoryUpdate` on which the test
  sees who deferred and why, re-asks (:meth:`InMemoryUpdate.ask`, what the nucleus
  does once ``recheckAfterMs`` has passed) and finishes (:meth:`InMemoryUpdate.finish`,
  the post-update event). :meth:`InMemoryBroker.update_components` does the whole
  loop. There is no clock: a component that does not answer simply has not answered.
* AWS IoT Core: :meth:`Bus.publish_to_iot_core` is checked as the nucleus checks it
  and recorded in :attr:`InMemoryBroker.iot_core_published`.
* Authorization, when the broker is made with ``enforce_access_control=True``: each
  bus's ``accessControl`` configuration (its recipe's policies) is enforced as the
  local core enforces it, for local pub/sub and for IoT Core, with AccessDenied.
"""

from __future__ import annotations

import copy
import itertools
import json
import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from vla_edge.bus.base import (
    Bus,
    ComponentState,
    ComponentUpdateEvent,
    ComponentUpdateHandler,
    ConfigurationHandler,
    MessageHandler,
    Payload,
    QoS,
    Subscription,
    ValidationHandler,
)
from vla_edge.bus.semantics import (
    IotCoreMessage,
    deep_merge,
    iot_core_publish,
    topic_matches,
    validate_filter,
    validate_topic,
)
from vla_edge.errors import AccessDenied, BusError, ConfigurationError

log = logging.getLogger(__name__)

PUBSUB = ("aws.greengrass.ipc.pubsub", "aws.greengrass#PublishToTopic", "aws.greengrass#SubscribeToTopic")
MQTT_PROXY = "aws.greengrass.ipc.mqttproxy"
PUBLISH_TO_IOT_CORE = "aws.greengrass#PublishToIoTCore"
TIME_LIMIT = "Time limit to respond to PreComponentUpdateEvent exceeded"


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


@dataclass(frozen=True)
class UpdateAnswer:
    """One component's answer to a pre-update event."""

    component: str
    recheck_after_ms: int
    message: str | None
    round: int


@dataclass(eq=False)
class InMemoryUpdate:
    """A deployment's component-update step on an :class:`InMemoryBroker`, driven by the test."""

    broker: InMemoryBroker
    deployment_id: str
    ggc_restarting: bool = False
    rounds: int = 0
    answers: list[UpdateAnswer] = field(default_factory=list)
    asked: list[str] = field(default_factory=list)
    """Components asked in the latest round."""
    finished: bool = False
    reason: Literal["no_subscribers", "not_deferred", "timeout", "max_rounds"] | None = None
    """Set by :meth:`InMemoryBroker.update_components`; mirrors the local core's outcome."""
    _waiting: set[str] = field(default_factory=set)

    @property
    def deferrals(self) -> list[UpdateAnswer]:
        return [a for a in self.answers if a.recheck_after_ms > 0]

    @property
    def unanswered(self) -> list[str]:
        """Components that have not answered the latest pre-update event."""
        return sorted(self._waiting)

    @property
    def deferred(self) -> bool:
        """Did an answer to the latest pre-update event ask for more time?"""
        return any(a.recheck_after_ms > 0 for a in self.answers if a.round == self.rounds)

    def ask(self) -> None:
        """Send (again) the pre-update event to every subscriber; their answers arrive while it runs."""
        if self.finished:
            raise BusError(f"the update step of deployment {self.deployment_id} is already finished")
        self.rounds += 1
        listeners = self.broker._update_listeners()
        self.asked = sorted({bus.name for bus, _handler in listeners})
        self._waiting = set(self.asked)
        event = ComponentUpdateEvent("pre", self.deployment_id, self.ggc_restarting)
        for _bus, handler in listeners:
            handler(event)

    def finish(self) -> None:
        """End the step: the post-update event goes to every subscriber."""
        if self.finished:
            return
        self.finished = True
        self._waiting = set()
        if self.broker.current_update is self:
            self.broker.current_update = None
        event = ComponentUpdateEvent("post", self.deployment_id)
        for _bus, handler in self.broker._update_listeners():
            handler(event)

    def _answer(self, component: str, deployment_id: str, message: str | None, recheck_after_ms: int) -> None:
        if component not in self._waiting:
            raise BusError(TIME_LIMIT)
        if deployment_id != self.deployment_id:
            raise BusError(f"deployment {deployment_id} is not the update waiting for an answer "
                           f"({self.deployment_id}); answer with the pre-update event's deployment_id")
        self._waiting.discard(component)
        self.answers.append(UpdateAnswer(component, recheck_after_ms, message, self.rounds))


@dataclass
class InMemoryBroker:
    """Shared by several :class:`InMemoryBus` instances so they can talk to each other."""

    _subscribers: list[_Entry] = field(default_factory=list)
    _ids: itertools.count = field(default_factory=itertools.count)
    published: list[tuple[str, Payload]] = field(default_factory=list)
    iot_core_published: list[IotCoreMessage] = field(default_factory=list)
    """Every message a bus published to AWS IoT Core, oldest first."""
    thing_name: str = "vla-edge-local"
    """What ``{iot:thingName}`` in policy resources stands for."""
    enforce_access_control: bool = False
    current_update: InMemoryUpdate | None = None
    _update_handlers: list[tuple[InMemoryBus, ComponentUpdateHandler]] = field(default_factory=list)
    _names: itertools.count = field(default_factory=lambda: itertools.count(1))

    def bus(self, configuration: dict[str, Any] | None = None, name: str | None = None) -> InMemoryBus:
        return InMemoryBus(self, configuration, name=name)

    def start_component_update(self, deployment_id: str | None = None, *, ggc_restarting: bool = False
                               ) -> InMemoryUpdate:
        """Begin a deployment's update step: the first pre-update event is sent before this returns."""
        if self.current_update is not None:
            raise BusError(f"the update step of deployment {self.current_update.deployment_id} is still running")
        update = InMemoryUpdate(self, deployment_id or str(uuid.uuid4()), ggc_restarting)
        self.current_update = update
        update.ask()
        return update

    def update_components(self, deployment_id: str | None = None, *, ggc_restarting: bool = False,
                          max_rounds: int = 100) -> InMemoryUpdate:
        """The whole step: ask until nobody defers (at most ``max_rounds`` times), then finish."""
        update = self.start_component_update(deployment_id, ggc_restarting=ggc_restarting)
        while update.asked and update.deferred and update.rounds < max_rounds:
            update.ask()
        if not update.asked:
            update.reason = "no_subscribers"
        elif update.deferred:
            update.reason = "max_rounds"
        else:
            update.reason = "timeout" if update.unanswered else "not_deferred"
        update.finish()
        return update

    def _update_listeners(self) -> list[tuple[InMemoryBus, ComponentUpdateHandler]]:
        return list(self._update_handlers)

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
    """One component's bus on an :class:`InMemoryBroker`; ``name`` is its component name (default component-N)."""

    def __init__(self, broker: InMemoryBroker | None = None, configuration: dict[str, Any] | None = None, *,
                 name: str | None = None) -> None:
        self.broker = broker or InMemoryBroker()
        self.name = name or f"component-{next(self.broker._names)}"
        self.configuration: dict[str, Any] = copy.deepcopy(configuration or {})
        self.states: list[ComponentState] = []
        self._config_handlers: list[ConfigurationHandler] = []
        self._validators: list[ValidationHandler] = []
        self._subscriptions: list[Subscription] = []

    def publish(self, topic: str, payload: Payload) -> None:
        self._authorize(PUBSUB[0], PUBSUB[1], topic, f"publish to {topic!r}")
        self.broker._publish(topic, payload)

    def subscribe(self, topic_filter: str, handler: MessageHandler) -> Subscription:
        self._authorize(PUBSUB[0], PUBSUB[2], topic_filter, f"subscribe to {topic_filter!r}")
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

    def subscribe_to_component_updates(self, handler: ComponentUpdateHandler) -> Subscription:
        entry = (self, handler)
        self.broker._update_handlers.append(entry)
        subscription = _Closer(lambda: self.broker._update_handlers.remove(entry)
                               if entry in self.broker._update_handlers else None)
        self._subscriptions.append(subscription)
        return subscription

    def defer_component_update(self, deployment_id: str, message: str | None = None,
                               recheck_after_ms: int = 0) -> None:
        if not any(bus is self for bus, _handler in self.broker._update_handlers):
            raise BusError("Component is not subscribed to component update events")
        if recheck_after_ms < 0:
            raise BusError(f"recheck_after_ms must not be negative, got {recheck_after_ms}")
        update = self.broker.current_update
        if update is None:
            raise BusError(TIME_LIMIT)
        update._answer(self.name, deployment_id, message, int(recheck_after_ms))

    def publish_to_iot_core(self, topic: str, payload: Payload, qos: QoS = 1) -> None:
        body = iot_core_publish(topic, payload, qos)
        self._authorize(MQTT_PROXY, PUBLISH_TO_IOT_CORE, topic, f"publish to IoT Core topic {topic!r}",
                        prefix="Authorization failed with error ")
        self.broker.iot_core_published.append(IotCoreMessage(topic, body, int(qos), self.name, False, time.time()))

    def close(self) -> None:
        for subscription in self._subscriptions:
            subscription.close()
        self._subscriptions.clear()

    def _authorize(self, service: str, operation: str, resource: str, what: str, prefix: str = "") -> None:
        """With ``enforce_access_control``, this bus's ``accessControl`` must grant the operation (as the core)."""
        if not self.broker.enforce_access_control:
            return
        from vla_edge.core.acl import AccessControl, parse_access_control  # only tests that ask for it pay

        acl = AccessControl(self.broker.thing_name)
        acl.set_policies(self.name, parse_access_control(self.name, self.configuration))
        if not acl.is_authorized(self.name, service, operation, resource):
            denial = prefix + acl.denial(self.name, service, operation, resource)
            raise AccessDenied(f"cannot {what}: {denial}; grant it in the recipe's accessControl")
