"""``LocalCore``: a development/CI stand-in for the Greengrass nucleus's IPC server.

It listens on ``<run_dir>/ipc.socket`` and speaks the real Greengrass IPC
protocol, so components use the unmodified awsiotsdk client exactly as on a
device; only the environment they are started with differs (see
:func:`component_environment`).

Besides pub/sub, configuration and lifecycle state it serves component updates
(:mod:`vla_edge.core.updates`; :meth:`LocalCore.update_components` plays a
deployment's update step) and the MQTT proxy to AWS IoT Core
(:mod:`vla_edge.core.mqtt`; with no cloud here, publishes are recorded, see
:meth:`LocalCore.iot_core_messages` and ``<run_dir>/iot-core.jsonl``). A second
socket, ``<run_dir>/ctl.socket`` (:mod:`vla_edge.core.control`), lets another
process start an update step or deploy a configuration change
(:meth:`LocalCore.deploy_configuration`): ``vla-edge core deploy``.

The run directory is created with mode 0700 and the sockets and ``core.json``
with 0600: the socket is the whole security boundary of IPC, and ``core.json``
holds every component's token. ``core.json`` looks like::

    {"format": 1, "socketPath": "/run/dir/ipc.socket", "pid": 4242,
     "controlSocketPath": "/run/dir/ctl.socket",
     "thingName": "vla-edge-local", "region": "us-east-1",
     "components": {"com.vlaedge.Camera": {"version": "0.1.0", "token": "..."},
                    "vla-edge.Monitor": {"version": null, "token": "..."}}}

The server is one asyncio event loop on a background thread. Every client has a
bounded outgoing queue, so a subscriber that stops reading loses its own events
(counted in :meth:`LocalCore.stats`, logged) and never stalls a publisher or
the other subscribers.

Size limits (:class:`~vla_edge.core.protocol.Limits`): a message payload above
``max_message_size`` (default 10 MiB) is read, discarded and answered with
InvalidArgumentsError on its stream; a frame above ``max_frame_size`` (24 MiB, the
ceiling of awscrt's own event-stream library) drops the connection. Large data
(images, model files) belongs in files whose paths travel over IPC.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import os
import secrets
import socket
import threading
import uuid
from collections.abc import Callable, Coroutine, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from vla_edge.bus.semantics import IotCoreMessage, iot_core_payload, iot_core_topic_problem
from vla_edge.core.acl import PUBSUB_SERVICE, AccessControl, Policy, parse_access_control
from vla_edge.core.configstore import ConfigStore
from vla_edge.core.control import CONTROL_SOCKET_NAME, ControlServer
from vla_edge.core.deployments import (
    DEFAULT_VALIDATION_TIMEOUT_S,
    ConfigurationDeployer,
    DeploymentResult,
    parse_update_config,
)
from vla_edge.core.environment import (  # re-exported: callers import these from here
    CORE_FILE,
    DEFAULT_REGION,
    DEFAULT_THING_NAME,
    component_environment,
    environment_for,
    read_core_file,
    unknown_component,
    write_core_file,
)
from vla_edge.core.mqtt import IotCoreProxy
from vla_edge.core.operations import SUBSCRIBE_TO_TOPIC, CoreServices, ValidityReport
from vla_edge.core.protocol import Limits, Stats
from vla_edge.core.recipes import Recipe, load_overrides, load_recipe, resolve_configurations
from vla_edge.core.rpc import Connection
from vla_edge.core.updates import DEFAULT_RECHECK_MIN_S, DEFAULT_TIMEOUT_S, ComponentUpdates, UpdateOutcome
from vla_edge.errors import BusError, ConfigurationError, CoreError

log = logging.getLogger(__name__)

SOCKET_NAME = "ipc.socket"
IOT_CORE_LOG = "iot-core.jsonl"
"""Every message published to IoT Core, one JSON object a line (kept after the core stops)."""
MONITOR_COMPONENT = "vla-edge.Monitor"
"""Built-in read-only identity: may only subscribe, and only under ``vla-edge/#``."""
_MAX_SOCKET_PATH = 107  # sun_path is 108 bytes including the terminating NUL
_T = TypeVar("_T")


class LocalCore:
    """Serve Greengrass IPC for the components of the given recipes.

    ``recipes`` are recipe file paths or loaded :class:`Recipe` objects;
    ``overrides`` a file path or a mapping of component name -> configuration
    fragment. Use as a context manager or call :meth:`start`/:meth:`stop`.
    """

    def __init__(self, run_dir: str | Path, recipes: Sequence[str | Path | Recipe],
                 overrides: str | Path | Mapping[str, Mapping[str, Any]] | None = None, *,
                 thing_name: str = DEFAULT_THING_NAME, region: str = DEFAULT_REGION,
                 limits: Limits | None = None) -> None:
        self.run_dir = Path(run_dir).absolute()
        self.socket_path = self.run_dir / SOCKET_NAME
        self.control_path = self.run_dir / CONTROL_SOCKET_NAME
        self.core_file = self.run_dir / CORE_FILE
        self.thing_name = thing_name
        self.region = region
        self.limits = limits or Limits()
        self.recipes = [r if isinstance(r, Recipe) else load_recipe(r) for r in recipes]
        if any(r.name == MONITOR_COMPONENT for r in self.recipes):
            raise ConfigurationError(f"{MONITOR_COMPONENT} is the core's built-in monitor identity; rename the recipe")
        fragments = overrides if isinstance(overrides, Mapping) else load_overrides(overrides)
        configurations = resolve_configurations(self.recipes, fragments)
        self.acl = AccessControl(thing_name)
        for name, configuration in configurations.items():
            self.acl.set_policies(name, parse_access_control(name, configuration))
        self.acl.set_policies(MONITOR_COMPONENT, [Policy(
            PUBSUB_SERVICE, f"{MONITOR_COMPONENT}:pubsub:read-only", frozenset({SUBSCRIBE_TO_TOPIC}),
            ("vla-edge/#",), "Watch every vla-edge topic, publish nothing.")])
        configurations[MONITOR_COMPONENT] = {}
        self.tokens = {name: secrets.token_urlsafe(32) for name in configurations}
        self.versions: dict[str, str | None] = {r.name: r.version for r in self.recipes}
        self.versions[MONITOR_COMPONENT] = None
        self.stats_counters = Stats()
        self.services = CoreServices(self.tokens, ConfigStore(configurations), self.acl, self.stats_counters)
        self.updates = ComponentUpdates(self.stats_counters)
        self.iot_core = IotCoreProxy(self.acl, self.stats_counters, self.run_dir / IOT_CORE_LOG)
        self.services.serve(self.updates.operations)
        self.services.serve(self.iot_core.operations)
        self.deployer = ConfigurationDeployer(self.services, self.updates, self.acl,
                                              {r.name: r.default_configuration for r in self.recipes},
                                              built_in=(MONITOR_COMPONENT,))
        self._control = ControlServer(self.control_path, self.updates, self.deployer, self.services.store)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.AbstractServer | None = None
        self._connections: set[Connection] = set()
        self._stopped = threading.Event()

    # -- lifecycle ------------------------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> LocalCore:
        """Listen on the socket and write ``core.json``; returns once clients can connect."""
        if self._thread is not None:
            raise CoreError("this LocalCore is already started")
        if len(os.fsencode(self.socket_path)) > _MAX_SOCKET_PATH:
            raise CoreError(f"socket path {self.socket_path} is {len(os.fsencode(self.socket_path))} bytes; Unix "
                            f"sockets allow {_MAX_SOCKET_PATH}: choose a shorter --run-dir")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.run_dir, 0o700)
        self._clear_stale_socket()
        ready = threading.Event()
        failure: list[BaseException] = []
        self._stopped.clear()
        self._thread = threading.Thread(target=self._run, args=(ready, failure), name="vla-edge-core", daemon=True)
        self._thread.start()
        if not ready.wait(timeout):
            raise CoreError(f"the local core did not start listening within {timeout:.0f} s")
        if failure:
            self._thread.join(timeout)
            self._thread = None
            raise CoreError(f"the local core could not listen on {self.socket_path}: {failure[0]}") from failure[0]
        self._write_core_file()
        log.info("local Greengrass core listening on %s for %d component(s): %s", self.socket_path,
                 len(self.tokens), ", ".join(sorted(self.tokens)))
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Close every connection, stop listening and remove the socket and ``core.json``."""
        if self._thread is None or self._loop is None:
            return
        loop = self._loop
        try:
            asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(timeout)
        except Exception as exc:  # the loop may already be gone; stopping must still finish
            log.warning("local core shutdown was not clean: %s", exc)
        loop.call_soon_threadsafe(loop.stop)
        self._thread.join(timeout)
        self._thread = None
        for path in (self.socket_path, self.control_path, self.core_file):
            path.unlink(missing_ok=True)
        self._stopped.set()
        log.info("local Greengrass core stopped; %s", self.stats())

    def wait(self, timeout: float | None = None) -> bool:
        """Block until :meth:`stop` has finished; False on timeout."""
        return self._stopped.wait(timeout)

    def __enter__(self) -> LocalCore:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- host-program API (thread-safe) ---------------------------------------------------------------

    def token(self, component: str) -> str:
        """The SVCUID of ``component``."""
        try:
            return self.tokens[component]
        except KeyError:
            raise ConfigurationError(unknown_component(component, self.tokens)) from None

    def environment(self, component: str) -> dict[str, str]:
        """The environment a process needs to connect as ``component`` (see :func:`component_environment`)."""
        return environment_for(str(self.socket_path), self.token(component), self.thing_name, self.region)

    def configuration(self, component: str) -> dict[str, Any]:
        """The component's current configuration (a copy)."""
        try:
            return self.services.store.snapshot(component)
        except KeyError:
            raise ConfigurationError(unknown_component(component, self.tokens)) from None

    def component_states(self) -> dict[str, str]:
        """Component -> last state it reported with UpdateState (RUNNING/ERRORED)."""
        return self.services.component_states()

    def wait_for_state(self, component: str, state: str = "RUNNING", timeout: float = 30.0) -> bool:
        return self.services.wait_for_state(component, state, timeout)

    def stats(self) -> dict[str, int]:
        """Counters: connections, protocol errors, dropped events, publishes, IoT Core publishes, updates..."""
        return self.stats_counters.snapshot()

    def iot_core_messages(self) -> list[IotCoreMessage]:
        """What components published to AWS IoT Core (recorded, not sent), oldest first; the last 1000."""
        return self.iot_core.messages()

    def deliver_from_iot_core(self, topic: str, payload: dict[str, Any] | bytes) -> int:
        """Play a message arriving from AWS IoT Core on ``topic``; returns how many subscriptions got it."""
        problem = iot_core_topic_problem(topic)
        if problem is not None:
            raise BusError(problem)
        body = iot_core_payload(payload)
        return self._call(self._on_loop(lambda: self.iot_core.deliver(topic, body)), 10.0)

    def update_subscribers(self) -> list[str]:
        """Components with an open SubscribeToComponentUpdates stream: who an update step would ask."""
        return self._call(self._on_loop(self.updates.subscribers), 10.0)

    def update_components(self, deployment_id: str | None = None, *, timeout_s: float = DEFAULT_TIMEOUT_S,
                          recheck_min_s: float = DEFAULT_RECHECK_MIN_S, max_wait_s: float | None = None,
                          ggc_restarting: bool = False, update: Callable[[], object] | None = None
                          ) -> UpdateOutcome:
        """Play a deployment's component-update step; blocks until it is over (see :mod:`vla_edge.core.updates`).

        Subscribers get pre-update events until none defers (``timeout_s`` is the deployment's
        componentUpdatePolicy timeout for each round of answers); then ``update`` (if given) runs
        on this thread, then the post-update event is sent, even when ``update`` raises.
        ``max_wait_s`` caps the whole wait, which the nucleus does not do. Only one update step
        runs at a time; a second is a CoreError.
        """
        deployment_id = deployment_id or str(uuid.uuid4())
        outcome = self._call(self.updates.negotiate(deployment_id, timeout_s=timeout_s, recheck_min_s=recheck_min_s,
                                                    max_wait_s=max_wait_s, ggc_restarting=ggc_restarting), None)
        try:
            if update is not None:
                update()
        finally:
            self._call(self._on_loop(lambda: self.updates.finish(deployment_id)), 10.0)
        return outcome

    def deploy_configuration(self, update_config: Mapping[str, Any], deployment_id: str | None = None, *,
                             timeout_s: float = DEFAULT_TIMEOUT_S, recheck_min_s: float = DEFAULT_RECHECK_MIN_S,
                             max_wait_s: float | None = None,
                             validation_timeout_s: float = DEFAULT_VALIDATION_TIMEOUT_S,
                             notify: bool = True) -> DeploymentResult:
        """Deploy greengrass-cli's ``--update-config`` (see :mod:`vla_edge.core.deployments`); blocks until done.

        A rejection is a FAILED result; an unknown component or a bad pointer a ConfigurationError.
        """
        update = parse_update_config(update_config)
        return self._call(self.deployer.deploy(
            update, deployment_id or str(uuid.uuid4()), timeout_s=timeout_s, recheck_min_s=recheck_min_s,
            max_wait_s=max_wait_s, validation_timeout_s=validation_timeout_s, notify=notify), None)

    def propose_configuration(self, component: str, configuration: Mapping[str, Any], timeout: float = 10.0, *,
                              apply: bool = False) -> ValidityReport | None:
        """Send ``configuration`` to the component's validator and wait for its ACCEPTED/REJECTED report.

        Returns None when the component has no validator subscribed (a deployment then proceeds
        unvalidated, as on the nucleus). With ``apply=True`` an accepted (or unvalidated)
        configuration replaces the component's configuration and configuration-update
        subscribers are notified. A component that does not answer within ``timeout`` is a
        CoreError.
        """
        if component not in self.tokens:
            raise ConfigurationError(unknown_component(component, self.tokens))
        loop = self._require_loop()
        proposal = json.loads(json.dumps(dict(configuration)))  # a JSON-clean copy, as it would travel
        future = asyncio.run_coroutine_threadsafe(self._propose(component, proposal, timeout, apply), loop)
        try:
            return future.result(timeout + 5.0)
        except TimeoutError:
            raise CoreError(f"{component} did not report on the proposed configuration within {timeout:g} s") from None

    async def _propose(self, component: str, proposal: dict[str, Any], timeout: float, apply: bool
                       ) -> ValidityReport | None:
        report = await self.services.request_validation(component, proposal, timeout)
        if apply and (report is None or report.status == "ACCEPTED"):
            self.services.store.replace(component, proposal)
            self.acl.set_policies(component, parse_access_control(component, proposal))
        return report

    # -- internals ------------------------------------------------------------------------------------

    def _require_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None or self._thread is None:
            raise CoreError("the local core is not running: call start() first")
        return self._loop

    @staticmethod
    async def _on_loop(function: Callable[[], _T]) -> _T:
        return function()

    def _call(self, coroutine: Coroutine[Any, Any, _T], timeout: float | None) -> _T:
        """Run ``coroutine`` on the core's loop and wait for it; the core stopping meanwhile is a CoreError."""
        try:
            loop = self._require_loop()
        except CoreError:
            coroutine.close()
            raise
        try:
            future = asyncio.run_coroutine_threadsafe(coroutine, loop)
        except RuntimeError as exc:  # the loop closed between the check and the call: the core stopped
            coroutine.close()
            raise CoreError("the local core is not running: call start() first") from exc
        try:
            return future.result(timeout)
        except concurrent.futures.CancelledError:
            raise CoreError("the local core stopped before the request finished") from None
        except TimeoutError:
            future.cancel()
            raise CoreError(f"the local core did not answer within {timeout:g} s") from None

    def _run(self, ready: threading.Event, failure: list[BaseException]) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            self._server = loop.run_until_complete(loop.create_unix_server(
                lambda: Connection(self.services, self.limits, self.stats_counters, self._connections),
                path=str(self.socket_path)))
            os.chmod(self.socket_path, 0o600)
            loop.run_until_complete(self._control.start())
        except BaseException as exc:  # report any failure to the starting thread
            if self._server is not None:
                self._server.close()
            failure.append(exc)
            ready.set()
            loop.close()
            self._loop = None
            return
        ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
            self._loop = None

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        self._control.close()
        self.updates.close()  # before the connections go: a step must not "proceed" because its subscribers left
        for connection in list(self._connections):
            connection.close()
        for _ in range(100):  # close() flushes first; give clients up to 2 s to be written to
            if not self._connections:
                break
            await asyncio.sleep(0.02)
        for connection in list(self._connections):
            if connection.transport is not None:
                connection.transport.abort()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _clear_stale_socket(self) -> None:
        if not self.socket_path.exists():
            return
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(self.socket_path))
        except OSError:
            self.socket_path.unlink(missing_ok=True)  # left by a core that died
            self.control_path.unlink(missing_ok=True)
        else:
            raise CoreError(f"another core is already serving {self.socket_path}; stop it or use another --run-dir")
        finally:
            probe.close()

    def _write_core_file(self) -> None:
        document = {
            "format": 1,
            "socketPath": str(self.socket_path),
            "pid": os.getpid(),
            "controlSocketPath": str(self.control_path),
            "thingName": self.thing_name,
            "region": self.region,
            "components": {name: {"version": self.versions.get(name), "token": token}
                           for name, token in sorted(self.tokens.items())},
        }
        write_core_file(self.core_file, document)


__all__ = ["CORE_FILE", "DEFAULT_REGION", "DEFAULT_THING_NAME", "MONITOR_COMPONENT", "SOCKET_NAME", "LocalCore",
           "component_environment", "read_core_file"]
