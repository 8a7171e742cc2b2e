"""What every component shares: validated inbound messages, counters, health, lifecycle.

A component is a class that takes a :class:`~vla_edge.bus.Bus` and its validated
configuration in the constructor and implements :meth:`Component.run` until a stop
event is set. :func:`run_component` is the whole entry point: it connects the bus,
validates the configuration (a bad one is reported as ERRORED with the reason and the
process exits non-zero, which the nucleus counts toward BROKEN), handles SIGTERM/SIGINT,
and reports state.
"""

from __future__ import annotations

import abc
import logging
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.alias_generators import to_camel

from vla_edge import messages
from vla_edge.bus.base import Bus, Payload, Subscription
from vla_edge.errors import (
    BusError,
    ConfigurationError,
    MessageError,
    UnexpectedTopic,
    VlaEdgeError,
)

M = TypeVar("M", bound=messages.Message)
C = TypeVar("C", bound=BaseModel)

HEALTH_PERIOD_S = 1.0


class ConfigModel(BaseModel):
    """Base of component configurations: camelCase keys as Greengrass recipes use, typos rejected."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


class Counters:
    """Thread-safe named counters, reported on the health topic."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def add(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self._counts[name] += amount

    def get(self, name: str) -> int:
        with self._lock:
            return self._counts[name]

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)


class MessageRouter:
    """Typed publish/subscribe over a raw bus: every inbound payload is validated first.

    A rejected message is logged with its reason and counted as
    ``rejected.<reason>`` (for example ``rejected.malformed``); the handler never sees it
    and the component keeps running.
    """

    def __init__(self, bus: Bus, counters: Counters, log: logging.Logger) -> None:
        self.bus = bus
        self.counters = counters
        self.log = log
        self._subscriptions: list[Subscription] = []

    def publish(self, message: messages.Message) -> None:
        topic, payload = messages.encode(message)
        self.bus.publish(topic, payload)
        self.counters.add(f"published.{message.kind}")

    def subscribe(
        self, topic_filter: str, handler: Callable[[M], None], expect: type[M] | None = None
    ) -> Subscription:
        def receive(topic: str, payload: Payload) -> None:
            try:
                message = messages.decode(topic, payload)
                if expect is not None and not isinstance(message, expect):
                    raise UnexpectedTopic(f"{topic!r} carries {message.kind!r} messages, not {expect.kind!r}")
            except MessageError as exc:
                self.counters.add(f"rejected.{exc.reason}")
                self.log.warning("rejected message on %s (%s): %s", topic, exc.reason, exc)
                return
            self.counters.add(f"received.{message.kind}")
            try:
                handler(message)  # type: ignore[arg-type]
            except Exception:  # a handler bug must not kill the transport thread
                self.counters.add("handler_errors")
                self.log.exception("handler for %s failed on a valid %s message", topic, message.kind)

        subscription = self.bus.subscribe(topic_filter, receive)
        self._subscriptions.append(subscription)
        return subscription

    def close(self) -> None:
        for subscription in self._subscriptions:
            subscription.close()
        self._subscriptions.clear()


class Component(abc.ABC, Generic[C]):
    """Base of the four components: a bus, a validated config, counters and a health loop."""

    name: str = "component"

    def __init__(self, bus: Bus, config: C) -> None:
        self.bus = bus
        self.config = config
        self.log = logging.getLogger(f"vla_edge.{self.name}")
        self.counters = Counters()
        self.router = MessageRouter(bus, self.counters, self.log)
        self.state = "STARTING"
        self.detail = ""
        self._last_health = 0.0

    @abc.abstractmethod
    def run(self, stop: threading.Event) -> None:
        """Do the component's work until ``stop`` is set."""

    def metrics(self) -> dict[str, float | None]:
        """Component-specific figures for the health message."""
        return {}

    def set_state(self, state: str, detail: str = "") -> None:
        """Record and report RUNNING/ERRORED to the nucleus (only on change)."""
        if state == self.state and detail == self.detail:
            return
        self.state, self.detail = state, detail
        if state in ("RUNNING", "ERRORED"):
            self.bus.update_state(state)  # type: ignore[arg-type]
        log = self.log.error if state == "ERRORED" else self.log.info
        log("state %s%s", state, f": {detail}" if detail else "")

    def publish_health(self, force: bool = False) -> None:
        now = time.time()
        if not force and now - self._last_health < HEALTH_PERIOD_S:
            return
        self._last_health = now
        self.router.publish(
            messages.ComponentHealth(
                t=now,
                component=self.name,
                state=self.state,  # type: ignore[arg-type]
                detail=self.detail[:2000],
                counters=self.counters.snapshot(),
                metrics=self.metrics(),
            )
        )
        self._heartbeat()

    def _heartbeat(self) -> None:
        """The container health check's heartbeat (:mod:`vla_edge.components.healthcheck`), when asked for."""
        from vla_edge.components.healthcheck import health_file, write_heartbeat

        path = health_file()
        if path is None:
            return
        try:
            write_heartbeat(path, self.name, self.state)
        except OSError as exc:
            self.counters.add("heartbeat_errors")
            if self.counters.get("heartbeat_errors") == 1:  # once: it would repeat every second
                self.log.warning("cannot write the heartbeat %s (the container health check fails): %s", path, exc)

    def changed_config(self) -> C | None:
        """The component's configuration as the core has it now, when valid and different.

        For components that apply updates live: an invalid one (which deploy-time validation
        should have refused) is logged and counted (``config_rejected``) and ``None`` returned,
        so the running configuration stays.
        """
        try:
            new = load_config(type(self.config), self.bus.get_configuration())
        except (ConfigurationError, BusError) as exc:
            self.counters.add("config_rejected")
            self.log.error("configuration update not applied, keeping the running one: %s", exc)
            return None
        return None if new == self.config else new

    def close(self) -> None:
        self.router.close()


def configuration_problem(config_type: type[BaseModel], proposed: Any) -> str | None:
    """Deploy-time check of a proposed configuration: ``None`` accepts, a string is why not."""
    try:
        load_config(config_type, proposed)
    except ConfigurationError as exc:
        return str(exc)
    return None


def load_config(config_type: type[C], raw: Any) -> C:
    """Validate a component configuration; unknown keys and bad values are named in the error."""
    if not isinstance(raw, dict):
        raise ConfigurationError(f"configuration must be an object, got {type(raw).__name__}")
    raw = {k: v for k, v in raw.items() if k != "accessControl"}
    try:
        return config_type.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}" for e in exc.errors()[:10]
        )
        raise ConfigurationError(
            f"invalid {config_type.__name__}: {problems}. Fix the component configuration "
            "(recipe DefaultConfiguration or the deployment's merge update) and deploy again."
        ) from exc


def run_component(
    component_type: type[Component[Any]],
    config_type: type[C],
    argv: Sequence[str] | None = None,
    bus_factory: Callable[[], Bus] | None = None,
) -> int:
    """Entry point shared by every component: returns the process exit code."""
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    log = logging.getLogger(f"vla_edge.{component_type.name}")
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("received signal %d, stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if bus_factory is None:
        from vla_edge.bus.ipc import GreengrassIpcBus

        bus_factory = GreengrassIpcBus.connect
    try:
        bus = bus_factory()
    except VlaEdgeError as exc:
        log.error("cannot connect to the Greengrass nucleus: %s", exc)
        return 3
    with bus:
        try:
            config = load_config(config_type, bus.get_configuration())
        except ConfigurationError as exc:
            log.error("%s", exc)
            bus.update_state("ERRORED")
            return 2
        try:
            component = component_type(bus, config)
        except VlaEdgeError as exc:
            log.error("cannot start: %s", exc)
            bus.update_state("ERRORED")
            return 4
        try:
            component.run(stop)
        except VlaEdgeError as exc:
            log.error("stopped on error: %s", exc)
            bus.update_state("ERRORED")
            return 1
        finally:
            component.close()
    log.info("stopped cleanly")
    return 0
