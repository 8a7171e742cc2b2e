"""The core's control socket: how ``vla-edge core deploy`` reaches a running core from another process.

A second Unix socket beside the IPC one, ``<run_dir>/ctl.socket`` (mode 0600 in
the 0700 run directory: the same boundary as ``ipc.socket``, whose owner already
holds every component's token in ``core.json``). It is not Greengrass IPC: it
stands in for the cloud's deployment service, so it has its own tiny protocol.

One request per connection, each way one line of JSON::

    -> {"op": "update-components", "deploymentId": "d-1", "timeoutS": 60,
        "recheckMinS": 1, "maxWaitS": null, "ggcRestarting": false}
    <- {"ok": true, "outcome": {...UpdateOutcome.to_dict()...}}
    <- {"ok": false, "error": "the update step of deployment d-0 is still running; one at a time"}

    -> {"op": "deploy-configuration", "deploymentId": "d-2", "timeoutS": 60, "recheckMinS": 1,
        "maxWaitS": null, "validationTimeoutS": 30,
        "update": {"com.vlaedge.ModelUpdater": {"RESET": ["/x"], "MERGE": {"modelPath": "/m/v2"}}}}
    <- {"ok": true, "deployment": {...DeploymentResult.to_dict()...}}    (status SUCCEEDED or FAILED)
    <- {"ok": false, "error": "unknown component 'com.x'; this core runs: ..."}

    -> {"op": "get-configuration", "component": "com.vlaedge.Actuator"}
    <- {"ok": true, "configuration": {...}}

``update-components`` plays a deployment's component-update step alone;
``deploy-configuration`` a deployment that changes configurations
(:mod:`vla_edge.core.deployments`): ``ok`` says the request was understood, the
deployment's ``status`` whether it went through. The answer comes when the step has
finished (pre-update rounds, then the post-update event), which can take as long as
components defer. A client that hangs up first cancels it: nothing is applied, and
subscribers get the post-update event at once, as for a cancelled deployment on the
nucleus.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import uuid
from collections.abc import Coroutine, Mapping
from pathlib import Path
from typing import Any

from vla_edge.core.configstore import ConfigStore
from vla_edge.core.deployments import (
    DEFAULT_VALIDATION_TIMEOUT_S,
    ConfigurationDeployer,
    DeploymentResult,
    parse_update_config,
)
from vla_edge.core.environment import read_core_file
from vla_edge.core.updates import DEFAULT_RECHECK_MIN_S, DEFAULT_TIMEOUT_S, ComponentUpdates
from vla_edge.errors import CoreError, VlaEdgeError

log = logging.getLogger(__name__)

CONTROL_SOCKET_NAME = "ctl.socket"
UPDATE_COMPONENTS = "update-components"
DEPLOY_CONFIGURATION = "deploy-configuration"
GET_CONFIGURATION = "get-configuration"
OPS = (UPDATE_COMPONENTS, DEPLOY_CONFIGURATION, GET_CONFIGURATION)
_MAX_REQUEST = 16 * 1024 * 1024
"""A configuration update travels in the request line; the nucleus takes merges up to 10 MiB."""


class ControlServer:
    """Serves the control socket on the core's event loop."""

    def __init__(self, path: Path, updates: ComponentUpdates, deployer: ConfigurationDeployer,
                 store: ConfigStore) -> None:
        self.path = path
        self.updates = updates
        self.deployer = deployer
        self.store = store
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_unix_server(self._serve, path=str(self.path), limit=_MAX_REQUEST)
        os.chmod(self.path, 0o600)

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                request = json.loads(await reader.readline())
            except ValueError as exc:  # LimitOverrunError is a ValueError too
                request = f"not one line of JSON within {_MAX_REQUEST} bytes ({exc})"
            if isinstance(request, dict):
                answer = await self._answer(request, reader)
            else:
                answer = {"ok": False, "error": f"the request must be one line with a JSON object, got {request!r:.200}"}
            if answer:
                writer.write(json.dumps(answer).encode() + b"\n")
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError) as exc:
            log.info("control client went away: %s", exc)
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _answer(self, request: dict[str, Any], reader: asyncio.StreamReader) -> dict[str, Any]:
        op = request.get("op")
        deployment_id = str(request.get("deploymentId") or uuid.uuid4())
        try:
            if op == GET_CONFIGURATION:
                return self._configuration(request)
            if op == UPDATE_COMPONENTS:
                work = self._update_components(deployment_id, **_step_options(request),
                                               ggc_restarting=bool(request.get("ggcRestarting", False)))
            elif op == DEPLOY_CONFIGURATION:
                update = parse_update_config(request.get("update"))
                validation_timeout_s = float(request.get("validationTimeoutS", DEFAULT_VALIDATION_TIMEOUT_S))
                work = self._deploy_configuration(deployment_id, update, validation_timeout_s,
                                                  notify=bool(request.get("notify", True)), **_step_options(request))
            else:
                return {"ok": False, "error": f"unknown op {op!r}; this core knows {', '.join(OPS)}"}
        except (TypeError, ValueError) as exc:
            return {"ok": False, "error": f"bad {op} request: {exc}"}
        except VlaEdgeError as exc:
            return {"ok": False, "error": str(exc)}
        return await self._until_done_or_hang_up(work, reader, f"deployment {deployment_id}")

    async def _until_done_or_hang_up(self, work: Coroutine[Any, Any, dict[str, Any]],
                                     reader: asyncio.StreamReader, what: str) -> dict[str, Any]:
        """Run ``work``; cancel it when the client closes its end first (it then gets no answer)."""
        task = asyncio.ensure_future(work)
        hang_up = asyncio.ensure_future(reader.read(1))  # b"" when the client closes its end
        await asyncio.wait({task, hang_up}, return_when=asyncio.FIRST_COMPLETED)
        if not task.done():
            log.warning("control client hung up; cancelling %s", what)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            return {}
        hang_up.cancel()
        try:
            return task.result()
        except asyncio.CancelledError:
            return {"ok": False, "error": f"the core stopped during {what}"}
        except VlaEdgeError as exc:
            return {"ok": False, "error": str(exc)}

    async def _update_components(self, deployment_id: str, **options: Any) -> dict[str, Any]:
        outcome = await self.updates.negotiate(deployment_id, **options)
        self.updates.finish(deployment_id)
        return {"ok": True, "outcome": outcome.to_dict()}

    async def _deploy_configuration(self, deployment_id: str, update: Mapping[str, Any], validation_timeout_s: float,
                                    **options: Any) -> dict[str, Any]:
        result = await self.deployer.deploy(update, deployment_id, validation_timeout_s=validation_timeout_s,
                                            **options)
        return {"ok": True, "deployment": result.to_dict()}

    def _configuration(self, request: dict[str, Any]) -> dict[str, Any]:
        component = request.get("component")
        if not isinstance(component, str) or not self.store.has(component):
            known = ", ".join(self.store.components())
            return {"ok": False, "error": f"unknown component {component!r}; this core runs: {known}"}
        return {"ok": True, "configuration": self.store.snapshot(component)}


def _step_options(request: Mapping[str, Any]) -> dict[str, Any]:
    """The component-update step's settings of a request (ValueError/TypeError when malformed)."""
    return {"timeout_s": float(request.get("timeoutS", DEFAULT_TIMEOUT_S)),
            "recheck_min_s": float(request.get("recheckMinS", DEFAULT_RECHECK_MIN_S)),
            "max_wait_s": None if request.get("maxWaitS") is None else float(request["maxWaitS"])}


# -- clients ----------------------------------------------------------------------------------------------


def control_socket(run_dir: str | Path) -> Path:
    """The control socket of the core running in ``run_dir`` (CoreError when none runs there)."""
    document = read_core_file(run_dir)
    return Path(document.get("controlSocketPath") or Path(run_dir) / CONTROL_SOCKET_NAME)


def deploy_configuration(run_dir: str | Path, update_config: Mapping[str, Any], *, deployment_id: str | None = None,
                         timeout_s: float = DEFAULT_TIMEOUT_S, recheck_min_s: float = DEFAULT_RECHECK_MIN_S,
                         max_wait_s: float | None = None,
                         validation_timeout_s: float = DEFAULT_VALIDATION_TIMEOUT_S,
                         notify: bool = True) -> DeploymentResult:
    """Deploy ``update_config`` (greengrass-cli's ``--update-config`` shape) to the core in ``run_dir``.

    Blocks until the deployment is over. A deployment that failed (a rejection) is a result
    with status FAILED; a request the core refused, or no core, is a CoreError.
    """
    parse_update_config(update_config)  # a malformed update is the caller's error, before any connection
    request = {"op": DEPLOY_CONFIGURATION, "deploymentId": deployment_id, "update": dict(update_config),
               "timeoutS": timeout_s, "recheckMinS": recheck_min_s, "maxWaitS": max_wait_s,
               "validationTimeoutS": validation_timeout_s, "notify": notify}
    answer = control_request(control_socket(run_dir), request)
    if not answer.get("ok"):
        raise CoreError(str(answer.get("error", answer)))
    return DeploymentResult.from_dict(answer["deployment"])


def read_configuration(run_dir: str | Path, component: str) -> dict[str, Any]:
    """The current configuration of ``component`` on the core in ``run_dir``."""
    answer = control_request(control_socket(run_dir), {"op": GET_CONFIGURATION, "component": component}, 30.0)
    if not answer.get("ok"):
        raise CoreError(str(answer.get("error", answer)))
    configuration = answer.get("configuration")
    if not isinstance(configuration, dict):
        raise CoreError(f"unexpected get-configuration answer {answer!r:.200}")
    return configuration


def control_request(socket_path: str | Path, request: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
    """Send one request to a core's control socket and return its answer (blocks until it comes)."""
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    connection.settimeout(timeout)
    try:
        try:
            connection.connect(str(socket_path))
        except OSError as exc:
            raise CoreError(f"cannot reach the core's control socket {socket_path}: {exc}; is the core running "
                            "(vla-edge core serve / vla-edge up) with this --run-dir?") from exc
        connection.sendall(json.dumps(request).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = connection.recv(65536)
            if not chunk:
                break
            data += chunk
    except TimeoutError as exc:
        raise CoreError(f"the core did not answer within {timeout:g} s") from exc
    except OSError as exc:
        raise CoreError(f"control socket {socket_path} failed: {exc}") from exc
    finally:
        connection.close()
    try:
        answer = json.loads(data)
    except ValueError as exc:
        raise CoreError(f"the core closed the control connection without a valid answer ({data[:200]!r})") from exc
    if not isinstance(answer, dict):
        raise CoreError(f"unexpected control answer {answer!r}")
    return answer
