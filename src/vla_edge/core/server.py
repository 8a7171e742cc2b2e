"""``LocalCore``: a development/CI stand-in for the Greengrass nucleus's IPC server.

It listens on ``<run_dir>/ipc.socket`` and speaks the real Greengrass IPC
protocol, so components use the unmodified awsiotsdk client exactly as on a
device; only the environment they are started with differs (see
:func:`component_environment`).

The run directory is created with mode 0700 and the socket and ``core.json``
with 0600: the socket is the whole security boundary of IPC, and ``core.json``
holds every component's token. ``core.json`` looks like::

    {"format": 1, "socketPath": "/run/dir/ipc.socket", "pid": 4242,
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
import json
import logging
import os
import secrets
import socket
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from vla_edge.core.acl import PUBSUB_SERVICE, AccessControl, Policy, parse_access_control
from vla_edge.core.configstore import ConfigStore
from vla_edge.core.operations import SUBSCRIBE_TO_TOPIC, CoreServices, ValidityReport
from vla_edge.core.protocol import Limits, Stats
from vla_edge.core.recipes import Recipe, load_overrides, load_recipe, resolve_configurations
from vla_edge.core.rpc import Connection
from vla_edge.errors import ConfigurationError, CoreError

log = logging.getLogger(__name__)

SOCKET_NAME = "ipc.socket"
CORE_FILE = "core.json"
MONITOR_COMPONENT = "vla-edge.Monitor"
"""Built-in read-only identity: may only subscribe, and only under ``vla-edge/#``."""
DEFAULT_THING_NAME = "vla-edge-local"
DEFAULT_REGION = "us-east-1"
_MAX_SOCKET_PATH = 107  # sun_path is 108 bytes including the terminating NUL


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
        for path in (self.socket_path, self.core_file):
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
            raise ConfigurationError(_unknown(component, self.tokens)) from None

    def environment(self, component: str) -> dict[str, str]:
        """The environment a process needs to connect as ``component`` (see :func:`component_environment`)."""
        return _environment(str(self.socket_path), self.token(component), self.thing_name, self.region)

    def configuration(self, component: str) -> dict[str, Any]:
        """The component's current configuration (a copy)."""
        try:
            return self.services.store.snapshot(component)
        except KeyError:
            raise ConfigurationError(_unknown(component, self.tokens)) from None

    def component_states(self) -> dict[str, str]:
        """Component -> last state it reported with UpdateState (RUNNING/ERRORED)."""
        return self.services.component_states()

    def wait_for_state(self, component: str, state: str = "RUNNING", timeout: float = 30.0) -> bool:
        return self.services.wait_for_state(component, state, timeout)

    def stats(self) -> dict[str, int]:
        """Counters: connections, protocol errors, oversized messages, dropped events, publishes..."""
        return self.stats_counters.snapshot()

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
            raise ConfigurationError(_unknown(component, self.tokens))
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

    def _run(self, ready: threading.Event, failure: list[BaseException]) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            self._server = loop.run_until_complete(loop.create_unix_server(
                lambda: Connection(self.services, self.limits, self.stats_counters, self._connections),
                path=str(self.socket_path)))
            os.chmod(self.socket_path, 0o600)
        except BaseException as exc:  # report any failure to the starting thread
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
        else:
            raise CoreError(f"another core is already serving {self.socket_path}; stop it or use another --run-dir")
        finally:
            probe.close()

    def _write_core_file(self) -> None:
        document = {
            "format": 1,
            "socketPath": str(self.socket_path),
            "pid": os.getpid(),
            "thingName": self.thing_name,
            "region": self.region,
            "components": {name: {"version": self.versions.get(name), "token": token}
                           for name, token in sorted(self.tokens.items())},
        }
        temporary = self.core_file.with_name(f".{CORE_FILE}.{os.getpid()}.tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(document, handle, indent=2)
            handle.write("\n")
        os.replace(temporary, self.core_file)


def read_core_file(run_dir: str | Path) -> dict[str, Any]:
    """The ``core.json`` of a running core, with a clear error when there is none."""
    path = Path(run_dir).absolute() / CORE_FILE
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CoreError(f"no local core is running in {path.parent} ({CORE_FILE} not found): start one with "
                        f"`vla-edge core serve --run-dir {path.parent} --recipe ...` or `vla-edge up`") from None
    except (OSError, ValueError) as exc:
        raise CoreError(f"cannot read {path}: {exc}") from exc
    if not isinstance(document, dict) or not isinstance(document.get("components"), dict):
        raise CoreError(f"{path} is not a vla-edge core file")
    return document


def component_environment(run_dir: str | Path, component_name: str) -> dict[str, str]:
    """Environment variables the nucleus gives a component process, for ``component_name`` of the core in ``run_dir``.

    ``AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT`` and ``SVCUID`` are what the SDK
    client reads; the rest (thing name, region, the TES token variable) are set as the
    nucleus sets them so component code that reads them behaves as on a device.
    """
    document = read_core_file(run_dir)
    components = document["components"]
    if component_name not in components:
        raise ConfigurationError(_unknown(component_name, components))
    return _environment(document["socketPath"], components[component_name]["token"],
                        document.get("thingName", DEFAULT_THING_NAME), document.get("region", DEFAULT_REGION))


def _environment(socket_path: str, token: str, thing_name: str, region: str) -> dict[str, str]:
    return {
        "AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT": socket_path,
        "AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH": socket_path,
        "SVCUID": token,
        "AWS_CONTAINER_AUTHORIZATION_TOKEN": token,
        "AWS_IOT_THING_NAME": thing_name,
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
    }


def _unknown(component: str, known: Mapping[str, Any]) -> str:
    return f"unknown component {component!r}; the core knows: {', '.join(sorted(known)) or 'none'}"
