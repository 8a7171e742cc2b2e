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

The answer comes when the update step has finished (pre-update rounds, then the
post-update event), which can take as long as components defer. A client that
hangs up first cancels the step: subscribers then get the post-update event at
once, as for a cancelled deployment on the nucleus.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import uuid
from pathlib import Path
from typing import Any

from vla_edge.core.updates import DEFAULT_RECHECK_MIN_S, DEFAULT_TIMEOUT_S, ComponentUpdates
from vla_edge.errors import CoreError, VlaEdgeError

log = logging.getLogger(__name__)

CONTROL_SOCKET_NAME = "ctl.socket"
UPDATE_COMPONENTS = "update-components"
_MAX_REQUEST = 64 * 1024


class ControlServer:
    """Serves the control socket on the core's event loop."""

    def __init__(self, path: Path, updates: ComponentUpdates) -> None:
        self.path = path
        self.updates = updates
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
            except ValueError as exc:
                request = f"not JSON ({exc})"
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
        if request.get("op") != UPDATE_COMPONENTS:
            return {"ok": False, "error": f"unknown op {request.get('op')!r}; this core knows {UPDATE_COMPONENTS!r}"}
        deployment_id = str(request.get("deploymentId") or uuid.uuid4())
        try:
            step = asyncio.ensure_future(self.updates.negotiate(
                deployment_id, timeout_s=float(request.get("timeoutS", DEFAULT_TIMEOUT_S)),
                recheck_min_s=float(request.get("recheckMinS", DEFAULT_RECHECK_MIN_S)),
                max_wait_s=None if request.get("maxWaitS") is None else float(request["maxWaitS"]),
                ggc_restarting=bool(request.get("ggcRestarting", False))))
        except (TypeError, ValueError) as exc:
            return {"ok": False, "error": f"bad update-components request: {exc}"}
        hang_up = asyncio.ensure_future(reader.read(1))  # b"" when the client closes its end
        await asyncio.wait({step, hang_up}, return_when=asyncio.FIRST_COMPLETED)
        if not step.done():
            log.warning("control client hung up; cancelling the update step of deployment %s", deployment_id)
            step.cancel()
            await asyncio.gather(step, return_exceptions=True)
            return {}
        hang_up.cancel()
        try:
            outcome = step.result()
        except asyncio.CancelledError:
            return {"ok": False, "error": f"the core stopped during the update step of deployment {deployment_id}"}
        except VlaEdgeError as exc:
            return {"ok": False, "error": str(exc)}
        self.updates.finish(deployment_id)
        return {"ok": True, "outcome": outcome.to_dict()}


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
