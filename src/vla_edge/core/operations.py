"""The IPC operations the local core serves, with the nucleus's request validation and error wording.

Served: PublishToTopic, SubscribeToTopic (pub/sub service ``aws.greengrass.ipc.pubsub``,
authorized by recipe policies), GetConfiguration, UpdateConfiguration,
SubscribeToConfigurationUpdate, SubscribeToValidateConfigurationUpdates,
SendConfigurationValidityReport and UpdateState (no policy needed, as on the
nucleus); :meth:`CoreServices.serve` adds those of :mod:`vla_edge.core.updates`
and :mod:`vla_edge.core.mqtt`. Any other operation gets the event-stream server's "Unsupported
Operation" answer, as a nucleus without the plugin that serves it would give.

Everything here runs on the core's event loop thread; the only thread-safe
entry points are :meth:`CoreServices.component_states` and
:meth:`CoreServices.wait_for_state`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from vla_edge.bus.semantics import topic_matches, validate_filter
from vla_edge.core.acl import PUBSUB_SERVICE, AccessControl
from vla_edge.core.configstore import ConfigStore, KeyPath, StaleUpdateError
from vla_edge.core.protocol import (
    FailedUpdateConditionCheckError,
    InvalidArgumentsError,
    Operation,
    ResourceNotFoundError,
    Router,
    Stats,
    UnauthorizedError,
)
from vla_edge.core.rpc import Stream
from vla_edge.errors import BusError

log = logging.getLogger(__name__)

NS = "aws.greengrass#"
PUBLISH_TO_TOPIC = NS + "PublishToTopic"
SUBSCRIBE_TO_TOPIC = NS + "SubscribeToTopic"
GET_CONFIGURATION = NS + "GetConfiguration"
UPDATE_CONFIGURATION = NS + "UpdateConfiguration"
SUBSCRIBE_TO_CONFIGURATION_UPDATE = NS + "SubscribeToConfigurationUpdate"
SUBSCRIBE_TO_VALIDATE_CONFIGURATION_UPDATES = NS + "SubscribeToValidateConfigurationUpdates"
SEND_CONFIGURATION_VALIDITY_REPORT = NS + "SendConfigurationValidityReport"
UPDATE_STATE = NS + "UpdateState"

RECEIVE_ALL = "RECEIVE_ALL_MESSAGES"
RECEIVE_FROM_OTHERS = "RECEIVE_MESSAGES_FROM_OTHERS"
REPORTABLE_STATES = ("RUNNING", "ERRORED")
KEY_NOT_FOUND = "Key not found"
RESTRICTED_CONFIGURATION_KEYS = ("accessControl",)


@dataclass(eq=False)
class _Subscription:
    topic_filter: str
    principal: str
    receive_mode: str
    stream: Stream


@dataclass(frozen=True)
class ValidityReport:
    """A component's answer to a proposed configuration."""

    deployment_id: str
    status: str
    """ACCEPTED or REJECTED."""
    message: str | None = None


class CoreServices(Router):
    """The core's state behind the operations: tokens, policies, configurations, subscriptions, states."""

    def __init__(self, tokens: Mapping[str, str], store: ConfigStore, acl: AccessControl, stats: Stats) -> None:
        self._principals = {token: name for name, token in tokens.items()}
        self.store = store
        self.acl = acl
        self.stats = stats
        self._subscriptions: list[_Subscription] = []
        self._validators: dict[str, Stream] = {}
        self._pending_reports: dict[tuple[str, str], asyncio.Future[ValidityReport]] = {}
        self._states: dict[str, tuple[str, float]] = {}
        self._states_changed = threading.Condition()
        self.operations: dict[str, Operation] = {
            PUBLISH_TO_TOPIC: Operation(NS + "PublishToTopicResponse", self.publish_to_topic),
            SUBSCRIBE_TO_TOPIC: Operation(NS + "SubscribeToTopicResponse", self.subscribe_to_topic, streaming=True),
            GET_CONFIGURATION: Operation(NS + "GetConfigurationResponse", self.get_configuration),
            UPDATE_CONFIGURATION: Operation(NS + "UpdateConfigurationResponse", self.update_configuration),
            SUBSCRIBE_TO_CONFIGURATION_UPDATE: Operation(
                NS + "SubscribeToConfigurationUpdateResponse", self.subscribe_to_configuration_update, streaming=True),
            SUBSCRIBE_TO_VALIDATE_CONFIGURATION_UPDATES: Operation(
                NS + "SubscribeToValidateConfigurationUpdatesResponse", self.subscribe_to_validate, streaming=True),
            SEND_CONFIGURATION_VALIDITY_REPORT: Operation(
                NS + "SendConfigurationValidityReportResponse", self.send_validity_report),
            UPDATE_STATE: Operation(NS + "UpdateStateResponse", self.update_state),
        }

    def authenticate(self, token: str) -> str | None:
        return self._principals.get(token)

    def serve(self, operations: Mapping[str, Operation]) -> None:
        """Add operations implemented elsewhere (component updates, the MQTT proxy) to this router."""
        clashing = set(operations) & set(self.operations)
        if clashing:
            raise ValueError(f"operations served twice: {sorted(clashing)}")
        self.operations.update(operations)

    # -- pub/sub --------------------------------------------------------------------------------------

    def _authorize(self, principal: str, operation: str, resource: str) -> None:
        if not self.acl.is_authorized(principal, PUBSUB_SERVICE, operation, resource):
            message = self.acl.denial(principal, PUBSUB_SERVICE, operation, resource)
            log.warning("%s", message)
            raise UnauthorizedError(message)

    def publish_to_topic(self, stream: Stream, request: dict[str, Any]) -> dict[str, Any]:
        topic = request.get("topic")
        if not isinstance(topic, str) or not topic:
            raise InvalidArgumentsError("Publish topic must not be null")
        self._authorize(stream.principal, PUBLISH_TO_TOPIC, topic)
        if "+" in topic or "#" in topic or "*" in topic:
            raise InvalidArgumentsError("Publish topic must not contain a wildcard.")
        event = _subscription_event(request.get("publishMessage"), topic)
        body = json.dumps(event, separators=(",", ":")).encode()
        self.stats.published += 1
        for subscription in list(self._subscriptions):
            if not topic_matches(subscription.topic_filter, topic):
                continue
            if subscription.receive_mode == RECEIVE_FROM_OTHERS and subscription.principal == stream.principal:
                continue
            if subscription.stream.send_event(NS + "SubscriptionResponseMessage", body):
                self.stats.delivered += 1
        return {}

    def subscribe_to_topic(self, stream: Stream, request: dict[str, Any]) -> dict[str, Any]:
        topic = request.get("topic")
        if not isinstance(topic, str) or not topic:
            raise InvalidArgumentsError("Subscribe topic must not be empty")
        self._authorize(stream.principal, SUBSCRIBE_TO_TOPIC, topic)
        try:
            validate_filter(topic)
        except BusError as exc:
            raise InvalidArgumentsError(str(exc)) from exc
        mode = request.get("receiveMode")
        if mode is None:  # the nucleus's default: wildcard filters do not echo the subscriber's own messages
            mode = RECEIVE_FROM_OTHERS if ("+" in topic or "#" in topic) else RECEIVE_ALL
        elif mode not in (RECEIVE_ALL, RECEIVE_FROM_OTHERS):
            raise InvalidArgumentsError(f"receiveMode must be {RECEIVE_ALL} or {RECEIVE_FROM_OTHERS}, got {mode!r}")
        subscription = _Subscription(topic, stream.principal, mode, stream)
        self._subscriptions.append(subscription)
        stream.on_close.append(lambda: self._subscriptions.remove(subscription))
        log.debug("%s subscribed to %s (%s)", stream.principal, topic, mode)
        return {}

    # -- configuration --------------------------------------------------------------------------------

    def get_configuration(self, stream: Stream, request: dict[str, Any]) -> dict[str, Any]:
        component = request.get("componentName") or stream.principal
        key_path = _key_path(request.get("keyPath"))
        try:
            node = self.store.get(component, key_path)
        except KeyError:
            raise ResourceNotFoundError(KEY_NOT_FOUND) from None
        # The nucleus answers a leaf as {leafName: value} and a container as the container itself.
        value = node if isinstance(node, dict) else {key_path[-1]: node}
        return {"componentName": component, "value": value}

    def update_configuration(self, stream: Stream, request: dict[str, Any]) -> dict[str, Any]:
        principal = stream.principal
        if request.get("componentName") not in (None, principal):
            raise InvalidArgumentsError("Cross component updates are not allowed")
        timestamp = request.get("timestamp")
        if timestamp is None:
            raise InvalidArgumentsError("Timestamp is required")
        if not isinstance(timestamp, (int, float)):
            raise InvalidArgumentsError(f"timestamp must be epoch seconds, got {timestamp!r}")
        value = request.get("valueToMerge")
        if value is None:
            raise InvalidArgumentsError("ValueToMerge is required")
        if not isinstance(value, dict):
            raise InvalidArgumentsError("valueToMerge must be an object")
        key_path = _key_path(request.get("keyPath"))
        if (not key_path and any(k in RESTRICTED_CONFIGURATION_KEYS for k in value)) or (
                key_path and key_path[0] in RESTRICTED_CONFIGURATION_KEYS):
            raise InvalidArgumentsError(
                f"Config update is not allowed for following fields {list(RESTRICTED_CONFIGURATION_KEYS)}")
        if not self.store.has(principal):
            raise InvalidArgumentsError(f"Component config not found for component {principal}")
        try:
            changed = self.store.merge(principal, key_path, value, int(timestamp * 1000))
        except StaleUpdateError:
            raise FailedUpdateConditionCheckError(
                "Proposed timestamp is older than the config's latest modified timestamp") from None
        log.info("%s updated its configuration at %s: %d key(s) changed", principal, list(key_path), len(changed))
        return {}

    def subscribe_to_configuration_update(self, stream: Stream, request: dict[str, Any]) -> dict[str, Any]:
        component = request.get("componentName") or stream.principal
        key_path = _key_path(request.get("keyPath"))
        try:
            self.store.get(component, key_path)
        except KeyError:
            raise ResourceNotFoundError(KEY_NOT_FOUND) from None

        def changed(name: str, path: KeyPath) -> None:
            event = {"configurationUpdateEvent": {"componentName": name, "keyPath": list(path)}}
            stream.send_event(NS + "ConfigurationUpdateEvents", json.dumps(event).encode())

        stream.on_close.append(self.store.watch(component, key_path, changed))
        return {}

    def subscribe_to_validate(self, stream: Stream, request: dict[str, Any]) -> dict[str, Any]:
        principal = stream.principal
        current = self._validators.get(principal)
        if current is not None and not current.closed:
            # The nucleus keeps the first validator of a component; a second subscription gets no events.
            log.warning("%s already has a configuration validator; the new subscription will get no events",
                        principal)
            return {}
        self._validators[principal] = stream

        def release() -> None:
            if self._validators.get(principal) is stream:
                del self._validators[principal]

        stream.on_close.append(release)
        return {}

    def send_validity_report(self, stream: Stream, request: dict[str, Any]) -> dict[str, Any]:
        report = request.get("configurationValidityReport")
        if not isinstance(report, dict):
            raise InvalidArgumentsError("configurationValidityReport is required")
        deployment_id = report.get("deploymentId")
        if deployment_id is None:
            raise InvalidArgumentsError(
                "Cannot accept configuration validity report, the deployment ID provided was null")
        status = report.get("status")
        if status not in ("ACCEPTED", "REJECTED"):
            raise InvalidArgumentsError(f"status must be ACCEPTED or REJECTED, got {status!r}")
        future = self._pending_reports.pop((stream.principal, str(deployment_id)), None)
        if future is None:
            raise InvalidArgumentsError("Validation request either timed out or was never made")
        if not future.done():
            future.set_result(ValidityReport(str(deployment_id), status, report.get("message")))
        return {}

    async def request_validation(self, component: str, configuration: dict[str, Any], timeout: float,
                                 deployment_id: str | None = None) -> ValidityReport | None:
        """Ask ``component`` to validate ``configuration``; None when it has no validator subscribed.

        ``deployment_id`` is the one the event carries (the component answers with it); a
        random one when the proposal belongs to no deployment. TimeoutError when it does not answer.
        """
        stream = self._validators.get(component)
        if stream is None or stream.closed:
            return None
        deployment_id = deployment_id or str(uuid.uuid4())
        future: asyncio.Future[ValidityReport] = asyncio.get_running_loop().create_future()
        self._pending_reports[(component, deployment_id)] = future
        event = {"validateConfigurationUpdateEvent": {"configuration": configuration, "deploymentId": deployment_id}}
        try:
            if not stream.send_event(NS + "ValidateConfigurationUpdateEvents", json.dumps(event).encode()):
                raise TimeoutError  # dropped: the component is not reading
            return await asyncio.wait_for(future, timeout)
        finally:
            self._pending_reports.pop((component, deployment_id), None)

    # -- lifecycle ------------------------------------------------------------------------------------

    def update_state(self, stream: Stream, request: dict[str, Any]) -> dict[str, Any]:
        state = request.get("state")
        if state not in REPORTABLE_STATES:
            raise InvalidArgumentsError(f"state must be one of {list(REPORTABLE_STATES)}, got {state!r}")
        with self._states_changed:
            previous = self._states.get(stream.principal, (None, 0.0))[0]
            self._states[stream.principal] = (state, time.time())
            self._states_changed.notify_all()
        if previous != state:
            log.info("%s reported state %s", stream.principal, state)
        return {}

    def component_states(self) -> dict[str, str]:
        """Component -> last reported state (RUNNING or ERRORED); components that never reported are absent."""
        with self._states_changed:
            return {name: state for name, (state, _at) in self._states.items()}

    def wait_for_state(self, component: str, state: str, timeout: float) -> bool:
        """Block until ``component`` last reported ``state``; False on timeout."""
        with self._states_changed:
            return self._states_changed.wait_for(
                lambda: self._states.get(component, (None, 0.0))[0] == state, timeout)


def _key_path(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(key, str) for key in value):
        raise InvalidArgumentsError(f"keyPath must be a list of strings, got {value!r}")
    return tuple(value)


def _subscription_event(message: Any, topic: str) -> dict[str, Any]:
    """The SubscriptionResponseMessage for a PublishMessage (exactly one of jsonMessage/binaryMessage)."""
    if not isinstance(message, dict):
        raise InvalidArgumentsError("publishMessage is required: set jsonMessage or binaryMessage")
    json_message, binary_message = message.get("jsonMessage"), message.get("binaryMessage")
    if (json_message is None) == (binary_message is None):
        raise InvalidArgumentsError("publishMessage must set exactly one of jsonMessage and binaryMessage")
    context = {"topic": topic}
    if json_message is not None:
        body = json_message.get("message") if isinstance(json_message, dict) else None
        if not isinstance(body, dict):
            raise InvalidArgumentsError("jsonMessage.message must be a JSON object")
        return {"jsonMessage": {"message": body, "context": context}}
    blob = binary_message.get("message", "") if isinstance(binary_message, dict) else None
    if not isinstance(blob, str):
        raise InvalidArgumentsError("binaryMessage.message must be a base64 string")
    try:
        base64.b64decode(blob, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidArgumentsError("binaryMessage.message is not valid base64") from None
    return {"binaryMessage": {"message": blob, "context": context}}
