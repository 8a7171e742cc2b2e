"""The MQTT proxy: PublishToIoTCore recorded locally, SubscribeToIoTCore, mqttproxy authorization, thing name."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from awsiot.greengrasscoreipc import model
from support.ipc import PUBLISH_TO_IOT_CORE, SUBSCRIBE_TO_IOT_CORE, Inbox, running_core, write_recipe

from vla_edge.core.acl import AccessControl
from vla_edge.core.mqtt import IotCoreProxy
from vla_edge.core.protocol import Stats
from vla_edge.core.server import IOT_CORE_LOG, LocalCore, component_environment
from vla_edge.errors import BusError

REPORTER = "com.test.Reporter"
CLOUDLESS = "com.test.Cloudless"
THING = "robot-7"


@pytest.fixture
def core(tmp_path: Path) -> Iterator[LocalCore]:
    recipes = [
        write_recipe(tmp_path, REPORTER, {"n": 1}, mqttproxy=[
            ([PUBLISH_TO_IOT_CORE], ["vla-edge/{iot:thingName}/model/status", "fleet/+/status", "logs/#"]),
            ([SUBSCRIBE_TO_IOT_CORE], ["commands/{iot:thingName}/#", "vla-edge/{iot:thingName}/model/status"])]),
        write_recipe(tmp_path, CLOUDLESS, {"n": 2}, pubsub=[(["*"], ["*"])]),  # local pub/sub only
    ]
    with running_core(recipes, thing_name=THING) as started:  # the ipc fixture (conftest.py) connects to it
        yield started


def test_publish_is_recorded_counted_and_logged_to_the_run_dir(core: LocalCore, ipc: Callable[[str], Any]) -> None:
    status = {"modelId": "act-2025-06", "sha256": "ab" * 32}
    ipc(REPORTER).publish_to_iot_core(topic_name=f"vla-edge/{THING}/model/status", qos=model.QOS.AT_MOST_ONCE,
                                      payload=json.dumps(status).encode())
    ipc(REPORTER).publish_to_iot_core(topic_name="logs/a/b", payload=b"\xff\x00raw")  # QoS defaults to 1
    first, second = core.iot_core_messages()
    assert (first.topic, first.qos, first.component, first.retain) == (f"vla-edge/{THING}/model/status", 0,
                                                                       REPORTER, False)
    assert first.json() == status
    assert (second.topic, second.qos, second.payload) == ("logs/a/b", 1, b"\xff\x00raw")
    assert core.stats()["iot_core_published"] == 2
    lines = [json.loads(line) for line in (core.run_dir / IOT_CORE_LOG).read_text().splitlines()]
    assert [(r["topic"], r["qos"], r["component"]) for r in lines] == [
        (f"vla-edge/{THING}/model/status", 0, REPORTER), ("logs/a/b", 1, REPORTER)]
    assert lines[0]["json"] == status and lines[1]["base64"] == "/wByYXc="
    assert (core.run_dir / IOT_CORE_LOG).stat().st_mode & 0o777 == 0o600


def test_publish_without_an_mqttproxy_policy_is_unauthorized(core: LocalCore, ipc: Callable[[str], Any]) -> None:
    with pytest.raises(model.UnauthorizedError) as raised:
        ipc(CLOUDLESS).publish_to_iot_core(topic_name="fleet/a/status", qos="1", payload=b"{}")
    assert raised.value.message == (
        f"Authorization failed with error Principal {CLOUDLESS} is not authorized to perform "
        "aws.greengrass.ipc.mqttproxy:aws.greengrass#PublishToIoTCore on resource fleet/a/status")
    assert core.iot_core_messages() == [] and core.stats()["iot_core_published"] == 0


@pytest.mark.parametrize(("topic", "allowed"), [
    (f"vla-edge/{THING}/model/status", True),      # {iot:thingName} is the core's thing name
    ("vla-edge/vla-edge-local/model/status", False),  # ...not the default one
    ("fleet/arm-1/status", True),                  # + is one level
    ("fleet/arm-1/extra/status", False),
    ("logs", True), ("logs/x/y/z", True),          # # is this level and below
    ("logsx/y", False),
])
def test_policy_resources_are_mqtt_topic_filters(ipc: Callable[[str], Any], topic: str, allowed: bool) -> None:
    client = ipc(REPORTER)
    if allowed:
        client.publish_to_iot_core(topic_name=topic, qos="0", payload=b"{}")
    else:
        with pytest.raises(model.UnauthorizedError):
            client.publish_to_iot_core(topic_name=topic, qos="0", payload=b"{}")


@pytest.mark.parametrize(("topic", "qos", "payload", "problem"), [
    ("logs/+", "0", b"", "must not contain wildcard"),
    ("logs/1/2/3/4/5/6/7/8", "0", b"", "no more than 7 forward slashes"),
    ("logs/" + "x" * 300, "0", b"", "no larger than 256 bytes"),
    ("logs/x", "2", b"", "qos must be"),
    ("logs/x", "1", b"x" * (128 * 1024 + 1), "exceeds AWS IoT Core's limit"),
])
def test_what_iot_core_would_refuse_is_invalid(core: LocalCore, ipc: Callable[[str], Any], topic: str, qos: str,
                                               payload: bytes, problem: str) -> None:
    with pytest.raises(model.InvalidArgumentsError) as raised:
        ipc(REPORTER).publish_to_iot_core(topic_name=topic, qos=qos, payload=payload)
    assert problem in raised.value.message
    assert core.iot_core_messages() == []


def test_subscribers_get_local_publishes_and_cloud_messages(core: LocalCore, ipc: Callable[[str], Any]) -> None:
    client = ipc(REPORTER)
    inbox = Inbox()
    client.subscribe_to_iot_core(topic_name=f"commands/{THING}/#", qos="1", on_stream_event=inbox)
    status = Inbox()
    client.subscribe_to_iot_core(topic_name=f"vla-edge/{THING}/model/status", on_stream_event=status)
    assert core.deliver_from_iot_core(f"commands/{THING}/model", {"update": "act-2"}) == 1
    client.publish_to_iot_core(topic_name=f"vla-edge/{THING}/model/status", payload=b'{"ok":true}')
    (command,) = inbox.wait_for_count(1)
    assert command.message.topic_name == f"commands/{THING}/model"
    assert json.loads(command.message.payload) == {"update": "act-2"}
    (echo,) = status.wait_for_count(1)  # IoT Core hands a publish back to its own matching subscription
    assert echo.message.payload == b'{"ok":true}'
    assert core.stats()["iot_core_delivered"] == 2
    with pytest.raises(model.UnauthorizedError):
        client.subscribe_to_iot_core(topic_name="commands/other-thing/#", on_stream_event=Inbox())
    with pytest.raises(BusError):
        core.deliver_from_iot_core("commands/+", b"")


def test_thing_name_reaches_every_component_environment(core: LocalCore) -> None:
    for component in (REPORTER, CLOUDLESS):
        assert core.environment(component)["AWS_IOT_THING_NAME"] == THING
        assert component_environment(core.run_dir, component)["AWS_IOT_THING_NAME"] == THING
    assert json.loads(core.core_file.read_text())["thingName"] == THING


def test_the_in_memory_record_is_bounded() -> None:
    proxy = IotCoreProxy(AccessControl("t"), Stats(), log_file=None, limit=3)
    proxy.acl.is_authorized = lambda *_args: True  # type: ignore[method-assign]
    caller = SimpleNamespace(principal="com.test.Chatty")
    for n in range(5):
        proxy.publish(caller, {"topicName": f"logs/{n}", "payload": ""})  # type: ignore[arg-type]
    assert [m.topic for m in proxy.messages()] == ["logs/2", "logs/3", "logs/4"]
    assert proxy.stats.iot_core_published == 5
