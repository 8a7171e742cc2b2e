"""A real S3 endpoint on loopback (moto's server) and a TCP proxy that can cut connections.

Downloads in the updater tests go over real HTTP: boto3 -> (optionally) :class:`CuttingProxy`
-> moto's ``ThreadedMotoServer``. The proxy logs every request's Range header, so a test can
assert which bytes a resumed download asked for, and it can close the connection after a
given number of response bytes (a link that drops mid-body) and then refuse connections
(a link that stays down).
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from moto.server import ThreadedMotoServer

REGION = "us-east-1"


def s3_client(endpoint_url: str, max_attempts: int = 1) -> Any:
    """A boto3 S3 client with dummy credentials; botocore's own retries off by default so tests see ours."""
    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(
            retries={"max_attempts": max_attempts, "mode": "standard"},
            connect_timeout=5,
            read_timeout=20,
            s3={"addressing_style": "path"},
        ),
    )


class MotoS3:
    """moto's S3 server on 127.0.0.1 at a free port, for one test session."""

    def __init__(self) -> None:
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.address = (host, port)
        self.endpoint_url = f"http://{host}:{port}"

    def client(self, endpoint_url: str | None = None, max_attempts: int = 1) -> Any:
        return s3_client(endpoint_url or self.endpoint_url, max_attempts)

    def new_bucket(self) -> str:
        name = f"models-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def reset(self) -> None:
        """Forget every bucket (moto keeps them in memory for the whole process)."""
        urllib.request.urlopen(urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST")).close()

    def stop(self) -> None:
        self._server.stop()


def upload_directory(client: Any, bucket: str, prefix: str, directory: Path) -> list[str]:
    """Put every file of ``directory`` (the manifest included) under ``prefix``; returns the keys."""
    keys = []
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        key = f"{prefix.strip('/')}/{path.relative_to(directory).as_posix()}"
        client.put_object(Bucket=bucket, Key=key, Body=path.read_bytes())
        keys.append(key)
    return keys


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    range: str | None

    def byte_range(self) -> tuple[int, int] | None:
        """``(first, last)`` from ``Range: bytes=first-last``."""
        match = re.fullmatch(r"bytes=(\d+)-(\d+)", self.range or "")
        return (int(match.group(1)), int(match.group(2))) if match else None


class CuttingProxy:
    """Forwards TCP between a client and ``upstream``; logs requests; can cut and refuse connections."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self._cut_budget: int | None = None
        self._down_after_cut = False
        self._down = False
        self.cuts = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)  # accept() wakes up to notice stop()
        self.endpoint_url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="cutting-proxy", daemon=True)
        self._thread.start()

    def cut_after(self, response_bytes: int, then_down: bool = False) -> None:
        """Close the connection once ``response_bytes`` more bytes went to the client (once).

        ``then_down``: afterwards, accept and immediately close every new connection until :meth:`up`.
        """
        with self._lock:
            self._cut_budget = response_bytes
            self._down_after_cut = then_down

    def up(self) -> None:
        with self._lock:
            self._down = False
            self._cut_budget = None

    def ranges(self, suffix: str) -> list[tuple[int, int]]:
        """The byte ranges asked for keys ending in ``suffix``, in order."""
        with self._lock:
            found = [r.byte_range() for r in self.requests if r.path.split("?")[0].endswith(suffix)]
        return [r for r in found if r is not None]

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=5)
        self._listener.close()

    # --- plumbing -------------------------------------------------------------------------------

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            with self._lock:
                down = self._down
            if down:
                _close(client)
                continue
            try:
                server = socket.create_connection(self.upstream, timeout=10)
            except OSError:
                _close(client)
                continue
            for target in (self._upstream_pump, self._downstream_pump):
                threading.Thread(target=target, args=(client, server), daemon=True).start()

    def _upstream_pump(self, client: socket.socket, server: socket.socket) -> None:
        """Client to server: forward unchanged, logging each request head (GETs: no bodies to skip)."""
        pending = b""
        try:
            while data := client.recv(65536):
                pending += data
                while b"\r\n\r\n" in pending:
                    head, pending = pending.split(b"\r\n\r\n", 1)
                    self._log(head)
                server.sendall(data)
        except OSError:
            pass  # the other pump closed the connection (a cut): nothing left to forward
        finally:
            _close(server)

    def _downstream_pump(self, client: socket.socket, server: socket.socket) -> None:
        """Server to client: forward, counting bytes against the cut budget."""
        try:
            while data := server.recv(65536):
                with self._lock:
                    budget = self._cut_budget
                    if budget is not None and len(data) >= budget:
                        self._cut_budget = None
                        self._down = self._down_after_cut
                        self.cuts += 1
                        cut = True
                    else:
                        if budget is not None:
                            self._cut_budget = budget - len(data)
                        cut = False
                if cut:
                    client.sendall(data[:budget])
                    break
                client.sendall(data)
        except OSError:
            pass  # the client went away: the connection is over either way
        finally:
            _close(client)
            _close(server)

    def _log(self, head: bytes) -> None:
        lines = head.decode("latin-1").split("\r\n")
        method, path = (lines[0].split(" ") + ["", ""])[:2]
        ranges = (line.split(":", 1)[1].strip() for line in lines[1:] if line.lower().startswith("range:"))
        range_header = next(ranges, None)
        with self._lock:
            self.requests.append(Request(method, path, range_header))


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already disconnected
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()
