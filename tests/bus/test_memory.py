from __future__ import annotations

import pytest

from vla_edge.bus.base import ComponentUpdateEvent
from vla_edge.bus.memory import InMemoryBroker
from vla_edge.bus.semantics import topic_matches, validate_filter
from vla_edge.errors import AccessDenied, BusError, ConfigurationError


@pytest.mark.parametrize(
    ("topic_filter", "topic", "expected"),
    [
        ("a/b", "a/b", True),
        ("a/b", "a/c", False),
        ("a/+/c", "a/x/c", True),
        ("a/+/c", "a/x/y/c", False),
        ("a/#", "a", True),
        ("a/#", "a/b/c", True),
        ("#", "anything/at/all", True),
        ("a/+", "a", False),
        ("+/+", "a/b", True),
    ],
)
def test_topic_matching(topic_filter: str, topic: str, expected: bool) -> None:
    assert topic_matches(topic_filter, topic) is expected


@pytest.mark.parametrize("bad", ["", "a/#/b", "a/b#", "a/x+"])
def test_bad_filters_are_refused(bad: str) -> None:
    with pytest.raises(BusError):
        validate_filter(bad)


def test_publish_subscribe_json_and_binary(broker: InMemoryBroker) -> None:
    a, b = broker.bus(), broker.bus()
    received: list[tuple[str, object]] = []
    b.subscribe("vla-edge/+/x", lambda topic, payload: received.append((topic, payload)))
    a.publish("vla-edge/one/x", {"n": 1})
    a.publish("vla-edge/two/x", b"\x00\x01")
    a.publish("vla-edge/one/y", {"n": 2})
    assert received == [("vla-edge/one/x", {"n": 1}), ("vla-edge/two/x", b"\x00\x01")]
    with pytest.raises(BusError):
        a.publish("vla-edge/+/x", {})


def test_configuration_update_and_validation(broker: InMemoryBroker) -> None:
    bus = broker.bus({"a": {"b": 1}})
    changes: list[tuple[str, ...]] = []
    bus.subscribe_to_configuration_update(changes.append)
    bus.update_configuration(["a"], {"c": 2})
    assert bus.get_configuration() == {"a": {"b": 1, "c": 2}}
    assert bus.get_configuration(["a", "c"]) == 2
    assert changes == [("a",)]
    with pytest.raises(ConfigurationError):
        bus.get_configuration(["missing"])
    bus.subscribe_to_validate_configuration_updates(lambda cfg: None if cfg.get("ok") else "not ok")
    assert bus.propose_configuration({"ok": True}) is None
    assert bus.propose_configuration({}) == "not ok"


# -- component updates and AWS IoT Core on the in-memory broker ------------------------------------------


def test_component_update_pre_defer_reask_post(broker: InMemoryBroker) -> None:
    arm, other = broker.bus(name="com.test.Arm"), broker.bus(name="com.test.Other")
    executing = [True]
    seen: list[ComponentUpdateEvent] = []

    def on_update(event: ComponentUpdateEvent) -> None:
        seen.append(event)
        if event.kind == "pre":
            arm.defer_component_update(event.deployment_id, "arm executing" if executing[0] else "holding",
                                       5000 if executing[0] else 0)

    arm.subscribe_to_component_updates(on_update)
    other.subscribe_to_component_updates(lambda e: other.defer_component_update(e.deployment_id)
                                         if e.kind == "pre" else None)
    update = broker.start_component_update("d-1")
    assert seen == [ComponentUpdateEvent("pre", "d-1", False)]
    assert update.deferred and [(a.component, a.recheck_after_ms, a.message) for a in update.deferrals] == [
        ("com.test.Arm", 5000, "arm executing")]
    executing[0] = False
    update.ask()  # what the nucleus does once recheckAfterMs has passed
    assert not update.deferred and update.rounds == 2 and update.unanswered == []
    update.finish()
    assert seen[-1] == ComponentUpdateEvent("post", "d-1")
    assert broker.current_update is None


def test_update_components_runs_the_whole_step(broker: InMemoryBroker) -> None:
    assert broker.update_components().reason == "no_subscribers"
    bus = broker.bus(name="com.test.Updater")
    asked: list[int] = []

    def defer_twice(event: ComponentUpdateEvent) -> None:
        if event.kind == "pre":
            asked.append(1)
            bus.defer_component_update(event.deployment_id, "busy", 100 if len(asked) <= 2 else 0)

    bus.subscribe_to_component_updates(defer_twice)
    update = broker.update_components("d-2", ggc_restarting=True)
    assert (update.reason, update.rounds, len(update.deferrals), update.finished) == ("not_deferred", 3, 2, True)
    silent = broker.bus(name="com.test.Silent")
    silent.subscribe_to_component_updates(lambda _event: None)
    assert broker.update_components().reason == "timeout"
    stubborn = broker.bus(name="com.test.Stubborn")
    stubborn.subscribe_to_component_updates(
        lambda e: stubborn.defer_component_update(e.deployment_id, "never", 1) if e.kind == "pre" else None)
    assert broker.update_components(max_rounds=4).reason == "max_rounds"


def test_defer_errors_match_the_core(broker: InMemoryBroker) -> None:
    bus = broker.bus(name="com.test.Late")
    with pytest.raises(BusError, match="not subscribed"):
        bus.defer_component_update("d", recheck_after_ms=0)
    bus.subscribe_to_component_updates(lambda _event: None)
    with pytest.raises(BusError, match="Time limit to respond"):
        bus.defer_component_update("d", recheck_after_ms=0)
    update = broker.start_component_update("d-3")
    with pytest.raises(BusError, match="not the update waiting"):
        bus.defer_component_update("other", recheck_after_ms=0)
    bus.defer_component_update("d-3", recheck_after_ms=0)
    with pytest.raises(BusError, match="Time limit to respond"):  # answered already
        bus.defer_component_update("d-3", recheck_after_ms=0)
    with pytest.raises(BusError, match="still running"):
        broker.start_component_update()
    update.finish()


def test_publish_to_iot_core_is_recorded(broker: InMemoryBroker) -> None:
    bus = broker.bus(name="com.test.Reporter")
    bus.publish_to_iot_core("vla-edge/robot/model/status", {"model": "act"}, qos=0)
    bus.publish_to_iot_core("logs/raw", b"\x00\x01")
    first, second = broker.iot_core_published
    assert (first.topic, first.qos, first.component, first.json()) == (
        "vla-edge/robot/model/status", 0, "com.test.Reporter", {"model": "act"})
    assert (second.payload, second.qos) == (b"\x00\x01", 1)
    for topic, qos, payload in (("logs/+", 1, b""), ("a/b/c/d/e/f/g/h/i", 1, b""), ("logs/x", 2, b""),
                                ("logs/x", 1, b"x" * (128 * 1024 + 1))):
        with pytest.raises(BusError):
            bus.publish_to_iot_core(topic, payload, qos)  # type: ignore[arg-type]
    assert len(broker.iot_core_published) == 2


def test_access_control_is_enforced_when_asked() -> None:
    broker = InMemoryBroker(enforce_access_control=True, thing_name="robot-7")
    policy = {"accessControl": {"aws.greengrass.ipc.mqttproxy": {"p": {
        "operations": ["aws.greengrass#PublishToIoTCore"], "resources": ["vla-edge/{iot:thingName}/model/+"]}}}}
    allowed, denied = broker.bus(policy, name="com.test.Updater"), broker.bus({}, name="com.test.Plain")
    allowed.publish_to_iot_core("vla-edge/robot-7/model/status", {"ok": True})
    with pytest.raises(AccessDenied, match=r"Authorization failed with error Principal com.test.Updater"):
        allowed.publish_to_iot_core("vla-edge/robot-8/model/status", {"ok": True})
    with pytest.raises(AccessDenied, match="aws.greengrass.ipc.mqttproxy:aws.greengrass#PublishToIoTCore"):
        denied.publish_to_iot_core("vla-edge/robot-7/model/status", {})
    with pytest.raises(AccessDenied, match="PublishToTopic"):
        denied.publish("vla-edge/x", {})
    assert [m.component for m in broker.iot_core_published] == ["com.test.Updater"]
