"""Local publish/subscribe through the core, with the real awsiotsdk client on a real socket."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from awsiot.eventstreamrpc import StreamClosedError
from awsiot.greengrasscoreipc import model
from support.ipc import ALPHA, BETA, GAMMA, Inbox

from vla_edge.core.server import MONITOR_COMPONENT, LocalCore


def json_message(body: dict[str, Any]) -> model.PublishMessage:
    return model.PublishMessage(json_message=model.JsonMessage(message=body))


def binary_message(body: bytes) -> model.PublishMessage:
    return model.PublishMessage(binary_message=model.BinaryMessage(message=body))


def subscribe(client: Any, topic: str, mode: str | None = model.ReceiveMode.RECEIVE_ALL_MESSAGES) -> tuple[Inbox, Any]:
    inbox = Inbox()
    _response, operation = client.subscribe_to_topic(topic=topic, receive_mode=mode, on_stream_event=inbox)
    return inbox, operation


def test_json_message_reaches_another_component(ipc: Callable[..., Any]) -> None:
    publisher, subscriber = ipc(BETA), ipc(ALPHA)
    inbox, _ = subscribe(subscriber, "test/json")
    publisher.publish_to_topic(topic="test/json", publish_message=json_message({"joints": [0.1, -2.5], "ok": True}))
    (event,) = inbox.wait_for_count(1)
    assert event.json_message.message == {"joints": [0.1, -2.5], "ok": True}
    assert event.json_message.context.topic == "test/json"
    assert event.binary_message is None


def test_binary_message_arrives_byte_for_byte(ipc: Callable[..., Any]) -> None:
    publisher, subscriber = ipc(BETA), ipc(ALPHA)
    inbox, _ = subscribe(subscriber, "test/bin")
    blob = bytes(range(256)) * 40
    publisher.publish_to_topic(topic="test/bin", publish_message=binary_message(blob))
    (event,) = inbox.wait_for_count(1)
    assert event.binary_message.message == blob
    assert event.binary_message.context.topic == "test/bin"


def test_single_level_wildcard(ipc: Callable[..., Any]) -> None:
    publisher, subscriber = ipc(ALPHA), ipc(ALPHA)
    inbox, _ = subscribe(subscriber, "vla-edge/camera/+/frame")
    for topic in ("vla-edge/camera/front/frame", "vla-edge/camera/front/depth", "vla-edge/camera/wrist/frame"):
        try:
            publisher.publish_to_topic(topic=topic, publish_message=json_message({"t": topic}))
        except model.UnauthorizedError:
            assert topic.endswith("depth")  # not granted to Alpha, and not delivered either
    events = inbox.wait_for_count(2)
    assert [e.json_message.context.topic for e in events] == ["vla-edge/camera/front/frame",
                                                              "vla-edge/camera/wrist/frame"]


def test_multi_level_wildcard_and_non_matching_topics(ipc: Callable[..., Any]) -> None:
    publisher, subscriber = ipc(ALPHA), ipc(ALPHA)
    inbox, _ = subscribe(subscriber, "test/a/#")
    for topic in ("test/b", "test/ab", "test/a", "test/a/b/c", "test/b/a"):
        publisher.publish_to_topic(topic=topic, publish_message=json_message({"t": topic}))
    publisher.publish_to_topic(topic="test/a/end", publish_message=json_message({"t": "end"}))
    events = inbox.wait_for_count(3)
    assert [e.json_message.context.topic for e in events] == ["test/a", "test/a/b/c", "test/a/end"]


def test_receive_mode_controls_own_messages(ipc: Callable[..., Any]) -> None:
    alpha, other = ipc(ALPHA), ipc(BETA)
    everything, _ = subscribe(alpha, "test/mode", model.ReceiveMode.RECEIVE_ALL_MESSAGES)
    others_only, _ = subscribe(alpha, "test/mode", model.ReceiveMode.RECEIVE_MESSAGES_FROM_OTHERS)
    default_wildcard, _ = subscribe(alpha, "test/+", None)  # the nucleus default for a wildcard: from others
    alpha.publish_to_topic(topic="test/mode", publish_message=json_message({"from": "alpha"}))
    other.publish_to_topic(topic="test/mode", publish_message=json_message({"from": "beta"}))
    assert [e.json_message.message["from"] for e in everything.wait_for_count(2)] == ["alpha", "beta"]
    assert [e.json_message.message["from"] for e in others_only.wait_for_count(1)] == ["beta"]
    assert [e.json_message.message["from"] for e in default_wildcard.wait_for_count(1)] == ["beta"]
    assert len(others_only.items) == 1 and len(default_wildcard.items) == 1


def test_closed_subscription_gets_nothing_more(ipc: Callable[..., Any]) -> None:
    publisher, subscriber = ipc(ALPHA), ipc(ALPHA)
    closed, operation = subscribe(subscriber, "test/close")
    still_open, _ = subscribe(subscriber, "test/close")
    publisher.publish_to_topic(topic="test/close", publish_message=json_message({"n": 1}))
    closed.wait_for_count(1)
    operation.close().result(5)
    publisher.publish_to_topic(topic="test/close", publish_message=json_message({"n": 2}))
    assert len(still_open.wait_for_count(2)) == 2  # same connection, same order: n=2 was sent after the close
    assert [e.json_message.message["n"] for e in closed.items] == [1]


def test_publish_not_granted_is_unauthorized_in_the_nucleus_wording(ipc: Callable[..., Any]) -> None:
    client = ipc(ALPHA)
    with pytest.raises(model.UnauthorizedError) as raised:
        client.publish_to_topic(topic="elsewhere/x", publish_message=json_message({}))
    assert raised.value.message == (
        f"Principal {ALPHA} is not authorized to perform aws.greengrass.ipc.pubsub:aws.greengrass#PublishToTopic "
        "on resource elsewhere/x")


def test_subscribe_not_granted_is_unauthorized(ipc: Callable[..., Any]) -> None:
    with pytest.raises(model.UnauthorizedError):
        ipc(GAMMA).subscribe_to_topic(topic="test/a", on_stream_event=Inbox())
    with pytest.raises(model.UnauthorizedError):
        ipc(ALPHA).subscribe_to_topic(topic="#", on_stream_event=Inbox())  # wider than test/#


def test_glob_and_star_operation_grants(ipc: Callable[..., Any]) -> None:
    beta = ipc(BETA)
    inbox, _ = subscribe(beta, "test/anything/deeper")  # "test/*" covers sub-levels
    beta.publish_to_topic(topic="test/anything/deeper", publish_message=json_message({"ok": 1}))
    inbox.wait_for_count(1)
    with pytest.raises(model.UnauthorizedError):
        beta.publish_to_topic(topic="shared/other", publish_message=json_message({}))


def test_monitor_identity_is_read_only_on_vla_edge_topics(core: LocalCore, ipc: Callable[..., Any]) -> None:
    monitor, alpha = ipc(MONITOR_COMPONENT), ipc(ALPHA)
    inbox, _ = subscribe(monitor, "vla-edge/#")
    alpha.publish_to_topic(topic="vla-edge/camera/front/frame", publish_message=binary_message(b"jpeg"))
    (event,) = inbox.wait_for_count(1)
    assert event.binary_message.context.topic == "vla-edge/camera/front/frame"
    with pytest.raises(model.UnauthorizedError):
        monitor.publish_to_topic(topic="vla-edge/arm/command", publish_message=json_message({}))
    with pytest.raises(model.UnauthorizedError):
        monitor.subscribe_to_topic(topic="test/#", on_stream_event=Inbox())


@pytest.mark.parametrize("topic", ["test/+", "test/#", "test/*"])
def test_publishing_to_a_wildcard_is_invalid(ipc: Callable[..., Any], topic: str) -> None:
    with pytest.raises(model.InvalidArgumentsError) as raised:
        ipc(BETA).publish_to_topic(topic=topic, publish_message=json_message({}))
    assert raised.value.message == "Publish topic must not contain a wildcard."


def test_publish_needs_exactly_one_message_kind(ipc: Callable[..., Any]) -> None:
    both = model.PublishMessage(json_message=model.JsonMessage(message={}),
                                binary_message=model.BinaryMessage(message=b"x"))
    with pytest.raises(model.InvalidArgumentsError):
        ipc(ALPHA).publish_to_topic(topic="test/x", publish_message=both)
    with pytest.raises(model.InvalidArgumentsError):
        ipc(ALPHA).publish_to_topic(topic="test/x", publish_message=model.PublishMessage())


def test_unknown_operation_gets_the_servers_unsupported_answer(ipc: Callable[..., Any]) -> None:
    # The nucleus's event-stream server answers an operation nobody serves with an unmodelled
    # error that the Python SDK surfaces as a closed stream.
    with pytest.raises(StreamClosedError):
        ipc(ALPHA).get_secret_value(secret_id="db-password")
    ipc(ALPHA).update_state(state="RUNNING")  # and the connection keeps working
