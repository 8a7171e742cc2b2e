"""Helpers for tests that run the local Greengrass core (importable as ``support.ipc``).

* :func:`write_recipe` writes a small component recipe into a test directory.
* :func:`short_run_dir` makes a run directory short enough for a Unix socket path
  (pytest's ``tmp_path`` can exceed the 107-byte limit); :func:`running_core` starts a core in one.
* The ``bus`` fixture (import :func:`bus_fixture`) connects ``GreengrassIpcBus`` components to the
  test module's ``core`` fixture.
* :func:`validator` answers a core's configuration proposals from an SDK client.
* :class:`RawClient` speaks event-stream RPC by hand over the socket, for what the
  SDK will not send: garbage, pings, messages before CONNECT, a client that never reads.
"""

from __future__ import annotations

import json
import shutil
import socket
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from vla_edge.core.eventstream import Decoder, Header, Message, encode_message
from vla_edge.core.protocol import MessageType
from vla_edge.core.server import LocalCore

if TYPE_CHECKING:
    from vla_edge.bus.ipc import GreengrassIpcBus

PUBLISH = "aws.greengrass#PublishToTopic"
SUBSCRIBE = "aws.greengrass#SubscribeToTopic"
PUBLISH_TO_IOT_CORE = "aws.greengrass#PublishToIoTCore"
SUBSCRIBE_TO_IOT_CORE = "aws.greengrass#SubscribeToIoTCore"

# The test components of tests/core/conftest.py (see its ``recipes`` fixture).
ALPHA = "com.test.Alpha"
BETA = "com.test.Beta"
GAMMA = "com.test.Gamma"
ALPHA_CONFIG: dict[str, Any] = {
    "mqtt": {"port": 443, "host": "localhost"},
    "name": "alpha",
    "tags": ["a", "b"],
    "nested": {"nested": 1},
}


def write_recipe(directory: Path, name: str, configuration: dict[str, Any] | None = None,
                 pubsub: Sequence[tuple[Sequence[str], Sequence[str]]] = (), version: str = "1.0.0",
                 mqttproxy: Sequence[tuple[Sequence[str], Sequence[str]]] = ()) -> Path:
    """A recipe whose DefaultConfiguration is ``configuration`` plus one policy per (operations, resources).

    ``pubsub`` policies go under ``aws.greengrass.ipc.pubsub``, ``mqttproxy`` ones under
    ``aws.greengrass.ipc.mqttproxy`` (PublishToIoTCore/SubscribeToIoTCore on MQTT topic filters).
    """
    default = dict(configuration or {})
    services = {"pubsub": pubsub, "mqttproxy": mqttproxy}
    access = {f"aws.greengrass.ipc.{service}": {
        f"{name}:{service}:{index}": {"policyDescription": "test policy", "operations": list(ops),
                                      "resources": list(resources)}
        for index, (ops, resources) in enumerate(policies, start=1)}
        for service, policies in services.items() if policies}
    if access:
        default["accessControl"] = access
    recipe = {"RecipeFormatVersion": "2020-01-25", "ComponentName": name, "ComponentVersion": version,
              "ComponentConfiguration": {"DefaultConfiguration": default},
              "Manifests": [{"Platform": {"os": "linux"}, "Lifecycle": {}}]}
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False), encoding="utf-8")
    return path


@contextmanager
def short_run_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="vla-", dir="/tmp"))
    try:
        yield path / "run"
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextmanager
def running_core(recipes: Sequence[Path], **options: Any) -> Iterator[LocalCore]:
    """A LocalCore of ``recipes`` (``options``: LocalCore's) started in a :func:`short_run_dir`; stopped after."""
    with short_run_dir() as run_dir:
        core = LocalCore(run_dir, recipes, **options).start()
        try:
            yield core
        finally:
            core.stop()


@pytest.fixture(name="bus")
def bus_fixture(core: LocalCore) -> Iterator[Callable[[str], GreengrassIpcBus]]:
    """``bus(component)`` connects a GreengrassIpcBus as ``component`` of ``core``; all are closed at teardown."""
    from vla_edge.bus.ipc import GreengrassIpcBus

    buses: list[GreengrassIpcBus] = []

    def connect(component: str) -> GreengrassIpcBus:
        buses.append(GreengrassIpcBus.connect(timeout=10, environment=core.environment(component)))
        return buses[-1]

    yield connect
    for connected in buses:
        connected.close()


class RawClient:
    """A hand-driven event-stream RPC client on a blocking socket."""

    def __init__(self, socket_path: str | Path, timeout: float = 10.0) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(str(socket_path))
        self.decoder = Decoder()
        self.pending: list[Message] = []

    def close(self) -> None:
        self.sock.close()

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send(self, kind: MessageType, *, flags: int = 0, stream_id: int = 0, headers: Sequence[Header] = (),
             payload: bytes = b"") -> None:
        all_headers = [*headers, Header.int32(":message-type", kind), Header.int32(":message-flags", flags),
                       Header.int32(":stream-id", stream_id)]
        self.send_raw(encode_message(all_headers, payload))

    def connect(self, token: str) -> Message:
        """CONNECT with ``token``; returns the CONNECT_ACK."""
        self.send(MessageType.CONNECT, headers=[Header.string(":version", "0.1.0")],
                  payload=json.dumps({"authToken": token}).encode())
        return self.receive()

    def request(self, stream_id: int, operation: str, body: dict[str, Any]) -> None:
        """Open ``stream_id`` with the first message of ``operation``."""
        self.send(MessageType.APPLICATION_MESSAGE, stream_id=stream_id, payload=json.dumps(body).encode(),
                  headers=[Header.string(":content-type", "application/json"),
                           Header.string("service-model-type", operation + "Request"),
                           Header.string("operation", operation)])

    def receive(self) -> Message:
        """The next message (raises ``ConnectionError`` at EOF, ``TimeoutError`` after the socket timeout)."""
        while not self.pending:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("the core closed the connection")
            self.pending.extend(self.decoder.feed(data))  # type: ignore[arg-type]
        return self.pending.pop(0)

    def closed_by_peer(self) -> bool:
        """Read until EOF; True if the core closed the socket (False if it timed out first)."""
        try:
            while True:
                self.receive()
        except ConnectionError:
            return True
        except TimeoutError:
            return False


def header_value(message: Message, name: str) -> Any:
    header = message.header(name)
    return None if header is None else header.value


class Inbox:
    """Thread-safe collector for stream events/handler calls, with waits on conditions (never on durations)."""

    def __init__(self) -> None:
        import threading

        self.items: list[Any] = []
        self._changed = threading.Condition()

    def __call__(self, *item: Any) -> None:
        with self._changed:
            self.items.append(item[0] if len(item) == 1 else item)
            self._changed.notify_all()

    def wait_for_count(self, count: int, timeout: float = 10.0) -> list[Any]:
        with self._changed:
            if not self._changed.wait_for(lambda: len(self.items) >= count, timeout):
                raise AssertionError(f"expected {count} item(s) within {timeout} s, got {len(self.items)}: "
                                     f"{self.items!r:.500}")
            return list(self.items)


def validator(client: Any, decide: Callable[[dict[str, Any]], str | None]) -> Inbox:
    """Subscribe ``client`` to validate-configuration updates: ``decide`` returns a rejection's reason or None."""
    from awsiot.greengrasscoreipc import model

    seen = Inbox()

    def on_event(event: model.ValidateConfigurationUpdateEvents) -> None:
        proposal = event.validate_configuration_update_event
        seen(proposal)
        reason = decide(proposal.configuration)
        report = model.ConfigurationValidityReport(
            status="ACCEPTED" if reason is None else "REJECTED", deployment_id=proposal.deployment_id, message=reason)
        client.send_configuration_validity_report_async(configuration_validity_report=report)

    client.subscribe_to_validate_configuration_updates(on_stream_event=on_event)
    return seen
