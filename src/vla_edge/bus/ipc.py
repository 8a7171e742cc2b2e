"""``GreengrassIpcBus``: the :class:`~vla_edge.bus.base.Bus` over Greengrass IPC (awsiotsdk).

This is the only module of vla-edge that imports awsiotsdk. Every SDK exception is
converted here, at the boundary: ``UnauthorizedError`` -> :class:`AccessDenied`,
configuration lookups -> :class:`ConfigurationError`, anything else ->
:class:`BusError`, always ``from`` the SDK exception so the cause stays visible.

It connects the way every Greengrass component does, from the environment the
nucleus (or ``vla-edge up`` / ``vla-edge core env``) sets:
``AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT`` and ``SVCUID``.

Delivery: the SDK hands events to an executor; we give it a single worker thread,
so handlers run one at a time in the order the core sent them (a thread pool
would reorder frames of one camera). A handler that raises is logged and the
subscription stays open. ``subscribe`` asks for ``RECEIVE_ALL_MESSAGES`` so a
component sees its own publications, as with :class:`~vla_edge.bus.memory.InMemoryBus`.
"""

from __future__ import annotations

import concurrent.futures
import datetime
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import awsiot.greengrasscoreipc
from awsiot.eventstreamrpc import AccessDeniedError
from awsiot.greengrasscoreipc import model
from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2

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
from vla_edge.bus.semantics import iot_core_publish, validate_filter, validate_topic
from vla_edge.errors import AccessDenied, BusError, ConfigurationError

log = logging.getLogger(__name__)

SOCKET_ENV = "AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT"
TOKEN_ENV = "SVCUID"
_THREAD_PREFIX = "vla-edge-ipc"
_CALL_TIMEOUT = 10.0


class _IpcSubscription(Subscription):
    def __init__(self, bus: GreengrassIpcBus, operation: Any, what: str) -> None:
        self._bus = bus
        self._operation = operation
        self._what = what
        self._closed = False

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._bus._forget(self)
        try:
            self._operation.close().result(_CALL_TIMEOUT)
        except Exception as exc:  # already closed by the core or the connection: nothing left to release
            log.debug("closing %s: %s", self._what, exc)


class GreengrassIpcBus(Bus):
    """A component's bus on a Greengrass (or local vla-edge) core. Build with :meth:`connect`."""

    def __init__(self, client: GreengrassCoreIPCClientV2) -> None:
        self._client = client
        self._subscriptions: list[_IpcSubscription] = []
        self._lock = threading.Lock()
        self._closed = False

    @classmethod
    def connect(cls, timeout: float = 10.0, *, environment: Mapping[str, str] | None = None,
                socket_path: str | None = None, token: str | None = None) -> GreengrassIpcBus:
        """Connect as the component the environment names, retrying while the core's socket is not up yet.

        ``environment`` defaults to this process's (as the nucleus sets it); a supervisor passes
        the one it got from :func:`vla_edge.core.server.component_environment` instead.
        """
        env = os.environ if environment is None else environment
        socket_path = socket_path or env.get(SOCKET_ENV)
        token = token or env.get(TOKEN_ENV)
        missing = [name for name, value in ((SOCKET_ENV, socket_path), (TOKEN_ENV, token)) if not value]
        if missing:
            raise ConfigurationError(
                f"{' and '.join(missing)} not set: this process must run under Greengrass or `vla-edge up`, "
                "or export the output of `vla-edge core env NAME` first")
        deadline = time.monotonic() + timeout
        delay = 0.05
        while True:
            remaining = deadline - time.monotonic()
            try:
                connection = awsiot.greengrasscoreipc.connect(
                    ipc_socket=socket_path, authtoken=token, timeout=max(remaining, 0.5))
                break
            except AccessDeniedError as exc:
                raise AccessDenied(
                    f"the core at {socket_path} rejected this component's SVCUID: the token is stale (core "
                    "restarted?) or belongs to another run; re-export `vla-edge core env NAME`") from exc
            except Exception as exc:  # socket missing / refused while the core starts: retry until the deadline
                if time.monotonic() + delay >= deadline:
                    raise BusError(f"cannot connect to the Greengrass core at {socket_path} within {timeout:g} s: "
                                   f"{exc}; is the core running?") from exc
                log.debug("core at %s not reachable yet (%s); retrying", socket_path, exc)
                time.sleep(delay)
                delay = min(delay * 2, 0.5)
        executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix=_THREAD_PREFIX)
        log.info("connected to the Greengrass core at %s", socket_path)
        return cls(GreengrassCoreIPCClientV2(client=connection, executor=executor))

    # -- pub/sub --------------------------------------------------------------------------------------

    def publish(self, topic: str, payload: Payload) -> None:
        validate_topic(topic)
        if isinstance(payload, dict):
            message = model.PublishMessage(json_message=model.JsonMessage(message=payload))
        elif isinstance(payload, (bytes, bytearray, memoryview)):
            message = model.PublishMessage(binary_message=model.BinaryMessage(message=bytes(payload)))
        else:
            raise BusError(f"payload must be a dict or bytes, not {type(payload).__name__}")
        self._call(f"publish to {topic!r}", lambda: self._client.publish_to_topic(topic=topic,
                                                                                  publish_message=message))

    def subscribe(self, topic_filter: str, handler: MessageHandler) -> Subscription:
        validate_filter(topic_filter)

        def on_event(event: model.SubscriptionResponseMessage) -> None:
            if event.json_message is not None:
                topic, payload = _topic(event.json_message, topic_filter), event.json_message.message
            elif event.binary_message is not None:
                topic, payload = _topic(event.binary_message, topic_filter), event.binary_message.message or b""
            else:
                log.warning("empty message on %s ignored", topic_filter)
                return
            _guarded(handler, f"handler for {topic_filter!r}", topic, payload)

        _response, operation = self._call(f"subscribe to {topic_filter!r}", lambda: self._client.subscribe_to_topic(
            topic=topic_filter, receive_mode=model.ReceiveMode.RECEIVE_ALL_MESSAGES, on_stream_event=on_event,
            on_stream_error=_stream_error(topic_filter), on_stream_closed=_stream_closed(topic_filter)))
        return self._remember(_IpcSubscription(self, operation, f"subscription to {topic_filter!r}"))

    # -- configuration --------------------------------------------------------------------------------

    def get_configuration(self, key_path: Sequence[str] = ()) -> Any:
        # The nucleus answers a leaf as {leafName: value} and a mapping as itself, so asking for the
        # key itself is ambiguous; asking for its parent (always a mapping) and indexing is not.
        path = list(key_path)
        parent = path[:-1]
        try:
            response = self._client.get_configuration(key_path=parent)
        except model.ResourceNotFoundError as exc:
            raise ConfigurationError(f"configuration has no key {'/'.join(path)!r}") from exc
        except Exception as exc:
            raise _converted(exc, "get configuration") from exc
        value = response.value or {}
        if not path:
            return value
        if not isinstance(value, dict) or path[-1] not in value:
            raise ConfigurationError(f"configuration has no key {'/'.join(path)!r}")
        return value[path[-1]]

    def update_configuration(self, key_path: Sequence[str], value: dict[str, Any]) -> None:
        try:
            self._client.update_configuration(key_path=list(key_path), value_to_merge=value,
                                              timestamp=datetime.datetime.now(datetime.UTC))
        except (model.InvalidArgumentsError, model.FailedUpdateConditionCheckError) as exc:
            raise ConfigurationError(f"configuration update at {list(key_path)} refused: {exc.message}") from exc
        except Exception as exc:
            raise _converted(exc, "update configuration") from exc

    def subscribe_to_configuration_update(self, handler: ConfigurationHandler, key_path: Sequence[str] = ()
                                          ) -> Subscription:
        def on_event(event: model.ConfigurationUpdateEvents) -> None:
            update = event.configuration_update_event
            if update is not None:
                _guarded(handler, "configuration update handler", tuple(update.key_path or ()))

        what = f"configuration updates at {list(key_path)}"
        try:
            _response, operation = self._client.subscribe_to_configuration_update(
                key_path=list(key_path), on_stream_event=on_event, on_stream_error=_stream_error(what),
                on_stream_closed=_stream_closed(what))
        except model.ResourceNotFoundError as exc:
            raise ConfigurationError(f"cannot watch configuration key {list(key_path)}: it does not exist") from exc
        except Exception as exc:
            raise _converted(exc, f"subscribe to {what}") from exc
        return self._remember(_IpcSubscription(self, operation, what))

    def subscribe_to_validate_configuration_updates(self, handler: ValidationHandler) -> Subscription:
        def on_event(event: model.ValidateConfigurationUpdateEvents) -> None:
            proposal = event.validate_configuration_update_event
            if proposal is None:
                return
            try:
                reason = handler(proposal.configuration or {})
            except Exception as exc:
                log.exception("configuration validator raised; rejecting the configuration")
                reason = f"validator raised {type(exc).__name__}: {exc}"
            status = (model.ConfigurationValidityStatus.ACCEPTED if reason is None
                      else model.ConfigurationValidityStatus.REJECTED)
            report = model.ConfigurationValidityReport(status=status, deployment_id=proposal.deployment_id,
                                                       message=reason)
            try:
                self._client.send_configuration_validity_report(configuration_validity_report=report)
            except Exception:
                log.exception("could not send the configuration validity report (%s)", status)

        what = "configuration validation"
        _response, operation = self._call(what, lambda: self._client.subscribe_to_validate_configuration_updates(
            on_stream_event=on_event, on_stream_error=_stream_error(what), on_stream_closed=_stream_closed(what)))
        return self._remember(_IpcSubscription(self, operation, what))

    # -- lifecycle ------------------------------------------------------------------------------------

    def update_state(self, state: ComponentState) -> None:
        self._call(f"report state {state}", lambda: self._client.update_state(state=state))

    # -- component updates ----------------------------------------------------------------------------

    def subscribe_to_component_updates(self, handler: ComponentUpdateHandler) -> Subscription:
        def on_event(event: model.ComponentUpdatePolicyEvents) -> None:
            if event.pre_update_event is not None:
                pre = event.pre_update_event
                update = ComponentUpdateEvent("pre", pre.deployment_id or "", bool(pre.is_ggc_restarting))
            elif event.post_update_event is not None:
                update = ComponentUpdateEvent("post", event.post_update_event.deployment_id or "")
            else:
                log.warning("empty component update event ignored")
                return
            _guarded(handler, "component update handler", update)

        what = "component updates"
        _response, operation = self._call(f"subscribe to {what}", lambda: self._client.subscribe_to_component_updates(
            on_stream_event=on_event, on_stream_error=_stream_error(what), on_stream_closed=_stream_closed(what)))
        return self._remember(_IpcSubscription(self, operation, what))

    def defer_component_update(self, deployment_id: str, message: str | None = None,
                               recheck_after_ms: int = 0) -> None:
        if recheck_after_ms < 0:
            raise BusError(f"recheck_after_ms must not be negative, got {recheck_after_ms}")
        self._call(f"answer the pre-update event of deployment {deployment_id}",
                   lambda: self._client.defer_component_update(deployment_id=deployment_id, message=message,
                                                               recheck_after_ms=int(recheck_after_ms)))

    # -- AWS IoT Core ---------------------------------------------------------------------------------

    def publish_to_iot_core(self, topic: str, payload: Payload, qos: QoS = 1) -> None:
        body = iot_core_publish(topic, payload, qos)
        self._call(f"publish to IoT Core topic {topic!r}", lambda: self._client.publish_to_iot_core(
            topic_name=topic, qos=str(qos), payload=body))

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            subscriptions = list(self._subscriptions)
        for subscription in subscriptions:
            subscription.close()
        in_handler = threading.current_thread().name.startswith(_THREAD_PREFIX)
        try:
            self._client.close(executor_wait=not in_handler).result(_CALL_TIMEOUT)
        except Exception as exc:
            log.debug("closing the IPC connection: %s", exc)

    # -- internals ------------------------------------------------------------------------------------

    def _call(self, what: str, call: Callable[[], Any]) -> Any:
        try:
            return call()
        except Exception as exc:
            raise _converted(exc, what) from exc

    def _remember(self, subscription: _IpcSubscription) -> _IpcSubscription:
        with self._lock:
            self._subscriptions.append(subscription)
        return subscription

    def _forget(self, subscription: _IpcSubscription) -> None:
        with self._lock:
            if subscription in self._subscriptions:
                self._subscriptions.remove(subscription)


def _converted(exc: Exception, what: str) -> Exception:
    """Our exception for an SDK one (the caller raises it ``from exc``)."""
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    if isinstance(exc, model.UnauthorizedError):
        return AccessDenied(f"cannot {what}: {message}; grant it in the recipe's accessControl")
    if isinstance(exc, model.ResourceNotFoundError):
        return ConfigurationError(f"cannot {what}: {message}")
    return BusError(f"cannot {what}: {type(exc).__name__}: {message}")


def _topic(message: Any, fallback: str) -> str:
    context = message.context
    return context.topic if context is not None and context.topic else fallback


def _guarded(handler: Callable[..., Any], what: str, *args: Any) -> None:
    try:
        handler(*args)
    except Exception:
        log.exception("%s raised; the subscription stays open", what)


def _stream_error(what: str) -> Callable[[Exception], bool]:
    def on_error(error: Exception) -> bool:
        log.error("error on %s: %r; keeping the stream open", what, error)
        return False

    return on_error


def _stream_closed(what: str) -> Callable[[], None]:
    def on_closed() -> None:
        log.info("%s closed", what)

    return on_closed
