"""``GreengrassIpcBus`` (the awsiotsdk adapter) against the local core over a real socket."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from support import wait_for
from support.ipc import (
    PUBLISH,
    SUBSCRIBE,
    Inbox,
    bus_fixture,  # noqa: F401 - the ``bus`` fixture
    running_core,
    short_run_dir,
    write_recipe,
)

from vla_edge.bus.ipc import GreengrassIpcBus
from vla_edge.core.protocol import Limits
from vla_edge.core.server import LocalCore
from vla_edge.errors import AccessDenied, BusError, ConfigurationError

CAMERA = "com.test.Camera"
POLICY = "com.test.Policy"
CAMERA_CONFIG = {"camera": {"fps": 30, "size": {"width": 640, "height": 480}}, "name": "front",
                 "same": {"same": 1}}


@pytest.fixture
def core(tmp_path: Path) -> Iterator[LocalCore]:
    recipes = [
        write_recipe(tmp_path, CAMERA, CAMERA_CONFIG,
                     pubsub=[([PUBLISH], ["vla-edge/camera/+/frame", "vla-edge/x"])]),
        write_recipe(tmp_path, POLICY, {"chunk": 8},
                     pubsub=[([SUBSCRIBE], ["vla-edge/#"]), ([PUBLISH], ["vla-edge/x"])]),
    ]
    with running_core(recipes, limits=Limits(max_message_size=256 * 1024)) as core:
        yield core


def test_dict_arrives_as_dict_and_bytes_as_bytes(bus: Callable[[str], GreengrassIpcBus]) -> None:
    camera, policy = bus(CAMERA), bus(POLICY)
    inbox = Inbox()
    policy.subscribe("vla-edge/#", inbox)
    camera.publish("vla-edge/camera/front/frame", b"\xff\xd8jpeg")
    camera.publish("vla-edge/x", {"n": 1, "nested": {"a": [1.5, None]}})
    assert inbox.wait_for_count(2) == [("vla-edge/camera/front/frame", b"\xff\xd8jpeg"),
                                       ("vla-edge/x", {"n": 1, "nested": {"a": [1.5, None]}})]


def test_connect_from_the_environment(core: LocalCore, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in core.environment(POLICY).items():
        monkeypatch.setenv(key, value)
    with GreengrassIpcBus.connect(timeout=10) as connected:
        assert connected.get_configuration(["chunk"]) == 8


def test_own_messages_are_delivered_like_the_in_memory_bus(bus: Callable[[str], GreengrassIpcBus]) -> None:
    policy = bus(POLICY)
    inbox = Inbox()
    policy.subscribe("vla-edge/+", inbox)
    policy.publish("vla-edge/x", {"self": True})
    assert inbox.wait_for_count(1) == [("vla-edge/x", {"self": True})]


def test_handler_exceptions_are_logged_and_the_stream_survives(bus: Callable[[str], GreengrassIpcBus],
                                                               caplog: pytest.LogCaptureFixture) -> None:
    camera, policy = bus(CAMERA), bus(POLICY)
    inbox = Inbox()

    def flaky(topic: str, payload: Any) -> None:
        inbox(topic, payload)
        if payload == {"n": 1}:
            raise RuntimeError("handler bug")

    policy.subscribe("vla-edge/x", flaky)
    with caplog.at_level(logging.ERROR, logger="vla_edge.bus.ipc"):
        camera.publish("vla-edge/x", {"n": 1})
        camera.publish("vla-edge/x", {"n": 2})
        assert [p for _t, p in inbox.wait_for_count(2)] == [{"n": 1}, {"n": 2}]
    assert any("handler bug" in (r.exc_text or "") or "raised" in r.getMessage() for r in caplog.records)


def test_closed_subscription_stops_delivery(bus: Callable[[str], GreengrassIpcBus]) -> None:
    camera, policy = bus(CAMERA), bus(POLICY)
    gone, kept = Inbox(), Inbox()
    subscription = policy.subscribe("vla-edge/x", gone)
    policy.subscribe("vla-edge/x", kept)
    camera.publish("vla-edge/x", {"n": 1})
    gone.wait_for_count(1)
    subscription.close()
    camera.publish("vla-edge/x", {"n": 2})
    kept.wait_for_count(2)  # delivered in order on one connection, so n=2 reached both streams' turn
    assert gone.items == [("vla-edge/x", {"n": 1})]


def test_operations_not_granted_raise_access_denied(bus: Callable[[str], GreengrassIpcBus]) -> None:
    camera = bus(CAMERA)
    with pytest.raises(AccessDenied, match=r"Principal com.test.Camera is not authorized.*PublishToTopic"):
        camera.publish("vla-edge/arm/command", {"stop": True})
    with pytest.raises(AccessDenied, match="SubscribeToTopic"):
        camera.subscribe("vla-edge/#", Inbox())


def test_invalid_topics_and_payloads_fail_before_the_wire(bus: Callable[[str], GreengrassIpcBus]) -> None:
    camera = bus(CAMERA)
    with pytest.raises(BusError):
        camera.publish("vla-edge/+/frame", b"x")
    with pytest.raises(BusError, match="dict or bytes"):
        camera.publish("vla-edge/x", "text")  # type: ignore[arg-type]


def test_oversized_publish_is_a_bus_error(bus: Callable[[str], GreengrassIpcBus]) -> None:
    with pytest.raises(BusError, match="exceeds the core's limit"):
        bus(CAMERA).publish("vla-edge/x", b"\0" * (512 * 1024))


def test_get_configuration_whole_key_and_leaf(bus: Callable[[str], GreengrassIpcBus]) -> None:
    camera = bus(CAMERA)
    whole = camera.get_configuration()
    assert {k: v for k, v in whole.items() if k != "accessControl"} == CAMERA_CONFIG
    assert camera.get_configuration(["camera", "size"]) == {"width": 640, "height": 480}
    assert camera.get_configuration(["camera", "fps"]) == 30  # the bare value, not {"fps": 30}
    assert camera.get_configuration(["same"]) == {"same": 1}  # a mapping that looks like a leaf answer
    with pytest.raises(ConfigurationError, match="camera/zoom"):
        camera.get_configuration(["camera", "zoom"])
    with pytest.raises(ConfigurationError):
        camera.get_configuration(["name", "deeper"])


def test_update_configuration_notifies_subscribers(bus: Callable[[str], GreengrassIpcBus]) -> None:
    camera = bus(CAMERA)
    changes = Inbox()
    camera.subscribe_to_configuration_update(changes, ["camera"])
    camera.update_configuration(["camera"], {"fps": 15})
    assert changes.wait_for_count(1) == [("camera", "fps")]
    assert camera.get_configuration(["camera", "fps"]) == 15
    with pytest.raises(ConfigurationError, match="accessControl"):
        camera.update_configuration(["accessControl"], {"x": 1})


def test_validation_handler_accepts_and_rejects(core: LocalCore, bus: Callable[[str], GreengrassIpcBus]) -> None:
    camera = bus(CAMERA)
    camera.subscribe_to_validate_configuration_updates(
        lambda proposal: None if proposal.get("camera", {}).get("fps", 0) <= 60 else "fps must be at most 60")
    accepted = core.propose_configuration(CAMERA, {"camera": {"fps": 25}}, timeout=10)
    rejected = core.propose_configuration(CAMERA, {"camera": {"fps": 90}}, timeout=10)
    assert accepted is not None and accepted.status == "ACCEPTED"
    assert rejected is not None and (rejected.status, rejected.message) == ("REJECTED", "fps must be at most 60")


def test_validation_handler_that_raises_rejects(core: LocalCore, bus: Callable[[str], GreengrassIpcBus]) -> None:
    def broken(_proposal: dict[str, Any]) -> str | None:
        raise KeyError("camera")

    bus(CAMERA).subscribe_to_validate_configuration_updates(broken)
    report = core.propose_configuration(CAMERA, {}, timeout=10)
    assert report is not None and report.status == "REJECTED" and "KeyError" in (report.message or "")


def test_update_state_reaches_the_core(core: LocalCore, bus: Callable[[str], GreengrassIpcBus]) -> None:
    bus(CAMERA).update_state("RUNNING")
    assert core.component_states()[CAMERA] == "RUNNING"


def test_connect_without_environment_explains_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT", raising=False)
    monkeypatch.delenv("SVCUID", raising=False)
    with pytest.raises(ConfigurationError, match=r"vla-edge up.*vla-edge core env NAME"):
        GreengrassIpcBus.connect(timeout=1)


def test_connect_with_a_bad_token_is_access_denied(core: LocalCore) -> None:
    with pytest.raises(AccessDenied, match="rejected this component's SVCUID"):
        GreengrassIpcBus.connect(timeout=10, socket_path=str(core.socket_path), token="stale-token")


def test_connect_gives_up_with_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(BusError, match="is the core running"):
        GreengrassIpcBus.connect(timeout=0.5, socket_path=str(tmp_path / "nothing.socket"), token="t")


def test_connect_waits_for_a_core_that_is_still_starting(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="vla_edge.bus.ipc")
    recipe = write_recipe(tmp_path, CAMERA, {"late": True})
    with short_run_dir() as run_dir:
        core = LocalCore(run_dir, [recipe])  # tokens exist before the socket does
        result: dict[str, Any] = {}

        def connect() -> None:
            try:
                result["bus"] = GreengrassIpcBus.connect(timeout=30, socket_path=str(core.socket_path),
                                                         token=core.token(CAMERA))
            except Exception as exc:  # reported below
                result["error"] = exc

        thread = threading.Thread(target=connect)
        thread.start()
        wait_for(lambda: any("not reachable yet" in r.getMessage() for r in caplog.records))  # it did retry
        with contextlib.ExitStack() as stack:
            stack.callback(core.stop)
            core.start()
            thread.join(40)
            assert "error" not in result, result.get("error")
            with result["bus"] as late:
                assert late.get_configuration(["late"]) is True


def test_core_going_away_turns_into_bus_errors(core: LocalCore, bus: Callable[[str], GreengrassIpcBus]) -> None:
    camera = bus(CAMERA)
    camera.subscribe_to_configuration_update(Inbox())
    core.stop()
    with pytest.raises(BusError):
        camera.publish("vla-edge/x", {"after": "stop"})
    camera.close()  # and closing does not hang or raise
