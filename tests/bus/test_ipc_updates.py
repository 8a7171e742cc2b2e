"""``GreengrassIpcBus`` component updates and IoT Core publishes against the local core over a real socket."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support.ipc import (
    PUBLISH_TO_IOT_CORE,
    Inbox,
    bus_fixture,  # noqa: F401 - the ``bus`` fixture
    running_core,
    write_recipe,
)

from vla_edge.bus.base import ComponentUpdateEvent
from vla_edge.bus.ipc import GreengrassIpcBus
from vla_edge.core.server import LocalCore
from vla_edge.errors import AccessDenied, BusError

UPDATER = "com.test.ModelUpdater"
PLAIN = "com.test.Plain"
THING = "arm-station-3"


@pytest.fixture
def core(tmp_path: Path) -> Iterator[LocalCore]:
    recipes = [
        write_recipe(tmp_path, UPDATER, {"x": 1},
                     mqttproxy=[([PUBLISH_TO_IOT_CORE], ["vla-edge/{iot:thingName}/model/#"])]),
        write_recipe(tmp_path, PLAIN, {"y": 2}),
    ]
    with running_core(recipes, thing_name=THING) as started:
        yield started


def test_update_deferred_while_executing_then_allowed(core: LocalCore,
                                                      bus: Callable[[str], GreengrassIpcBus]) -> None:
    updater = bus(UPDATER)
    executing = threading.Event()
    executing.set()
    events = Inbox()

    def on_update(event: ComponentUpdateEvent) -> None:
        events(event)
        if event.kind == "pre":
            if executing.is_set():
                updater.defer_component_update(event.deployment_id, "arm is executing a chunk", 50)
                executing.clear()  # the arm comes to rest before the next ask
            else:
                updater.defer_component_update(event.deployment_id, "arm holding", 0)

    updater.subscribe_to_component_updates(on_update)
    outcome = core.update_components("model-v2", timeout_s=30, recheck_min_s=0, ggc_restarting=True)
    assert (outcome.reason, outcome.rounds) == ("not_deferred", 2)
    assert [(r.component, r.message, r.recheck_after_ms) for r in outcome.responses] == [
        (UPDATER, "arm is executing a chunk", 50), (UPDATER, "arm holding", 0)]
    assert events.wait_for_count(3) == [ComponentUpdateEvent("pre", "model-v2", True),
                                        ComponentUpdateEvent("pre", "model-v2", True),
                                        ComponentUpdateEvent("post", "model-v2", False)]


def test_update_proceeds_when_the_component_does_not_answer(core: LocalCore,
                                                            bus: Callable[[str], GreengrassIpcBus]) -> None:
    events = Inbox()
    bus(UPDATER).subscribe_to_component_updates(events)
    outcome = core.update_components("quiet", timeout_s=0.3, recheck_min_s=0)
    assert (outcome.reason, outcome.unanswered) == ("timeout", (UPDATER,))
    assert [e.kind for e in events.wait_for_count(2)] == ["pre", "post"]


def test_defer_outside_an_update_is_a_bus_error(bus: Callable[[str], GreengrassIpcBus]) -> None:
    plain = bus(PLAIN)
    with pytest.raises(BusError, match="not subscribed to component update events"):
        plain.defer_component_update("d", "x", 10)
    plain.subscribe_to_component_updates(Inbox())
    with pytest.raises(BusError, match="Time limit to respond to PreComponentUpdateEvent exceeded"):
        plain.defer_component_update("d", "x", 10)
    with pytest.raises(BusError, match="negative"):
        plain.defer_component_update("d", "x", -1)


def test_failing_update_handler_is_logged_and_keeps_the_stream(core: LocalCore,
                                                               bus: Callable[[str], GreengrassIpcBus],
                                                               caplog: pytest.LogCaptureFixture) -> None:
    events = Inbox()

    def broken(event: ComponentUpdateEvent) -> None:
        events(event)
        raise RuntimeError("handler bug")

    bus(UPDATER).subscribe_to_component_updates(broken)
    with caplog.at_level(logging.ERROR, logger="vla_edge.bus.ipc"):
        core.update_components("one", timeout_s=0.2, recheck_min_s=0)
        core.update_components("two", timeout_s=0.2, recheck_min_s=0)
        assert [(e.kind, e.deployment_id) for e in events.wait_for_count(4)] == [
            ("pre", "one"), ("post", "one"), ("pre", "two"), ("post", "two")]
    assert any("component update handler raised" in r.getMessage() for r in caplog.records)


def test_publish_to_iot_core_is_recorded_by_the_core(core: LocalCore, bus: Callable[[str], GreengrassIpcBus]) -> None:
    updater = bus(UPDATER)
    updater.publish_to_iot_core(f"vla-edge/{THING}/model/status", {"model": "act-v2", "ok": True}, qos=0)
    updater.publish_to_iot_core(f"vla-edge/{THING}/model/raw", b"\x00\xff")
    status, raw = core.iot_core_messages()
    assert (status.topic, status.qos, status.component, status.json()) == (
        f"vla-edge/{THING}/model/status", 0, UPDATER, {"model": "act-v2", "ok": True})
    assert (raw.payload, raw.qos) == (b"\x00\xff", 1)


def test_publish_to_iot_core_denied_or_invalid(core: LocalCore, bus: Callable[[str], GreengrassIpcBus]) -> None:
    with pytest.raises(AccessDenied, match=r"Principal com.test.Plain is not authorized.*PublishToIoTCore"):
        bus(PLAIN).publish_to_iot_core(f"vla-edge/{THING}/model/status", {})
    with pytest.raises(AccessDenied):
        bus(UPDATER).publish_to_iot_core("vla-edge/another-thing/model/status", {})
    with pytest.raises(BusError, match="wildcard"):
        bus(UPDATER).publish_to_iot_core("vla-edge/+/model/status", {})
    with pytest.raises(BusError, match="128|limit"):
        bus(UPDATER).publish_to_iot_core(f"vla-edge/{THING}/model/big", b"x" * (200 * 1024))
    assert core.iot_core_messages() == [] and core.stats()["iot_core_published"] == 0
