"""The core as a server: files and permissions, authentication, limits, bad clients, slow clients."""

from __future__ import annotations

import json
import os
import stat
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import awsiot.greengrasscoreipc
import pytest
from awsiot.eventstreamrpc import AccessDeniedError
from awsiot.greengrasscoreipc import model
from support.ipc import ALPHA, BETA, SUBSCRIBE, Inbox, RawClient, header_value
from support import wait_for

from vla_edge.core.eventstream import Header, encode_message
from vla_edge.core.protocol import Limits, MessageFlag, MessageType
from vla_edge.core.server import MONITOR_COMPONENT, LocalCore, component_environment
from vla_edge.errors import ConfigurationError, CoreError


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_run_dir_socket_and_core_file_are_private(core: LocalCore) -> None:
    assert mode(core.run_dir) == 0o700
    assert mode(core.socket_path) == 0o600 and stat.S_ISSOCK(os.stat(core.socket_path).st_mode)
    assert mode(core.core_file) == 0o600
    document = json.loads(core.core_file.read_text())
    assert document["socketPath"] == str(core.socket_path)
    assert document["pid"] == os.getpid()
    assert set(document["components"]) == {ALPHA, BETA, "com.test.Gamma", MONITOR_COMPONENT}
    assert document["components"][ALPHA] == {"version": "1.0.0", "token": core.token(ALPHA)}
    assert len({c["token"] for c in document["components"].values()}) == 4  # one random SVCUID each


def test_component_environment_matches_what_the_nucleus_sets(core: LocalCore) -> None:
    environment = component_environment(core.run_dir, ALPHA)
    assert environment["AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT"] == str(core.socket_path)
    assert environment["SVCUID"] == environment["AWS_CONTAINER_AUTHORIZATION_TOKEN"] == core.token(ALPHA)
    assert environment["AWS_IOT_THING_NAME"] == "vla-edge-local"
    assert environment["AWS_REGION"] == "us-east-1"
    with pytest.raises(ConfigurationError, match=r"unknown component 'com.test.Nope'.*com.test.Alpha"):
        component_environment(core.run_dir, "com.test.Nope")


def test_component_environment_without_a_core_says_how_to_start_one(tmp_path: Path) -> None:
    with pytest.raises(CoreError, match="vla-edge core serve"):
        component_environment(tmp_path, ALPHA)


def test_stop_removes_the_socket_and_core_file(core_factory: Callable[..., LocalCore]) -> None:
    core = core_factory()
    core.stop()
    assert not core.socket_path.exists() and not core.core_file.exists()


def test_second_core_on_the_same_run_dir_is_refused(core: LocalCore) -> None:
    twin = LocalCore(core.run_dir, [r.path for r in core.recipes if r.path])
    with pytest.raises(CoreError, match="already serving"):
        twin.start()


def test_bad_token_is_rejected_like_the_nucleus(core: LocalCore) -> None:
    with pytest.raises(AccessDeniedError):
        awsiot.greengrasscoreipc.connect(ipc_socket=str(core.socket_path), authtoken="not-a-token", timeout=10)
    assert core.stats()["connections_rejected"] == 1
    assert core.stats()["connections_accepted"] == 0


def test_token_of_another_run_is_rejected(core_factory: Callable[..., LocalCore]) -> None:
    first, second = core_factory(), core_factory()
    with pytest.raises(AccessDeniedError):
        awsiot.greengrasscoreipc.connect(ipc_socket=str(second.socket_path), authtoken=first.token(ALPHA))


def test_wrong_rpc_version_is_rejected(core: LocalCore) -> None:
    raw = RawClient(core.socket_path)
    raw.send(MessageType.CONNECT, headers=[Header.string(":version", "9.9.9")],
             payload=json.dumps({"authToken": core.token(ALPHA)}).encode())
    ack = raw.receive()
    assert header_value(ack, ":message-type") == MessageType.CONNECT_ACK
    assert not header_value(ack, ":message-flags") & MessageFlag.CONNECTION_ACCEPTED
    raw.close()


def test_oversized_message_is_an_invalid_arguments_error(core_factory: Callable[..., LocalCore],
                                                         ipc: Callable[..., Any]) -> None:
    core = core_factory(limits=Limits(max_message_size=64 * 1024))
    client = ipc(ALPHA, core)
    message = model.PublishMessage(binary_message=model.BinaryMessage(message=b"\0" * (100 * 1024)))
    with pytest.raises(model.InvalidArgumentsError) as raised:
        client.publish_to_topic(topic="test/big", publish_message=message)
    assert "exceeds the core's limit of 65536 bytes" in raised.value.message
    assert core.stats()["oversized_messages"] == 1
    small = model.PublishMessage(binary_message=model.BinaryMessage(message=b"\0" * 1024))
    client.publish_to_topic(topic="test/big", publish_message=small)  # the same connection still works


def test_default_limit_accepts_nine_mib_and_refuses_eleven(core: LocalCore, ipc: Callable[..., Any]) -> None:
    client, inbox = ipc(ALPHA), Inbox()
    client.subscribe_to_topic(topic="test/large", on_stream_event=inbox)
    payload = os.urandom(9 * 1024 * 1024 * 3 // 4)  # base64 makes it ~9 MiB on the wire
    client.publish_to_topic(topic="test/large",
                            publish_message=model.PublishMessage(binary_message=model.BinaryMessage(message=payload)))
    assert inbox.wait_for_count(1, timeout=30)[0].binary_message.message == payload
    too_big = model.PublishMessage(binary_message=model.BinaryMessage(message=b"x" * (11 * 1024 * 1024 * 3 // 4)))
    with pytest.raises(model.InvalidArgumentsError):
        client.publish_to_topic(topic="test/large", publish_message=too_big)


def test_garbage_is_counted_and_other_clients_keep_working(core: LocalCore, ipc: Callable[..., Any]) -> None:
    good = ipc(ALPHA)
    garbage = RawClient(core.socket_path)
    garbage.send_raw(b"\x00\x00\x00\x20" + b"this is not an event-stream frame!!")
    assert garbage.closed_by_peer()
    corrupt = RawClient(core.socket_path)
    frame = bytearray(encode_message([Header.int32(":message-type", MessageType.CONNECT)], b"{}"))
    frame[-1] ^= 0xFF  # bad message CRC
    corrupt.send_raw(bytes(frame))
    assert corrupt.closed_by_peer()
    assert core.stats()["protocol_errors"] == 2
    inbox = Inbox()
    good.subscribe_to_topic(topic="test/after", on_stream_event=inbox)
    good.publish_to_topic(topic="test/after",
                          publish_message=model.PublishMessage(json_message=model.JsonMessage(message={"ok": 1})))
    assert inbox.wait_for_count(1)[0].json_message.message == {"ok": 1}
    fresh = ipc(BETA)  # and new connections are still accepted
    assert fresh.get_configuration(key_path=["gain"]).value == {"gain": 1.5}


def test_protocol_violations_get_a_protocol_error_then_close(core: LocalCore) -> None:
    early = RawClient(core.socket_path)  # an application message before CONNECT
    early.request(1, SUBSCRIBE, {"topic": "test/x"})
    reply = early.receive()
    assert header_value(reply, ":message-type") == MessageType.PROTOCOL_ERROR
    assert b"expected CONNECT" in reply.payload
    assert early.closed_by_peer()
    headless = RawClient(core.socket_path)  # a frame without the RPC headers
    headless.send_raw(encode_message([Header.string("hello", "world")], b""))
    assert header_value(headless.receive(), ":message-type") == MessageType.PROTOCOL_ERROR
    assert core.stats()["protocol_errors"] == 2


def test_ping_is_answered_with_the_echoed_headers(core: LocalCore) -> None:
    raw = RawClient(core.socket_path)
    assert header_value(raw.connect(core.token(ALPHA)), ":message-flags") & MessageFlag.CONNECTION_ACCEPTED
    raw.send(MessageType.PING, headers=[Header.string("probe", "42")], payload=b"are you there")
    pong = raw.receive()
    assert header_value(pong, ":message-type") == MessageType.PING_RESPONSE
    assert header_value(pong, "probe") == "42" and pong.payload == b"are you there"
    raw.close()


def test_slow_subscriber_loses_its_own_events_without_stalling_others(
        core_factory: Callable[..., LocalCore], ipc: Callable[..., Any]) -> None:
    core = core_factory(limits=Limits(max_queued_events=32))
    stalled = RawClient(core.socket_path)  # subscribes, then never reads again
    assert header_value(stalled.connect(core.token(BETA)), ":message-flags") & MessageFlag.CONNECTION_ACCEPTED
    stalled.request(1, SUBSCRIBE, {"topic": "test/flood", "receiveMode": "RECEIVE_ALL_MESSAGES"})
    assert header_value(stalled.receive(), "service-model-type") == "aws.greengrass#SubscribeToTopicResponse"
    publisher, reader = ipc(ALPHA, core), ipc(ALPHA, core)
    count = 0
    done = threading.Event()

    def on_event(_event: Any) -> None:
        nonlocal count
        count += 1
        if count == total:
            done.set()

    reader.subscribe_to_topic(topic="test/flood", on_stream_event=on_event)
    total = 600
    body = model.PublishMessage(binary_message=model.BinaryMessage(message=b"f" * 32 * 1024))
    for _ in range(total):
        publisher.publish_to_topic(topic="test/flood", publish_message=body)  # never blocks on the stalled one
    assert done.wait(30), f"the reading subscriber got {count} of {total}"
    wait_for(lambda: core.stats()["dropped_events"] > 0)
    assert core.stats()["dropped_events"] < total
    stalled.close()


def test_many_concurrent_clients_all_get_the_message(core: LocalCore, ipc: Callable[..., Any]) -> None:
    clients: list[Any] = [None] * 24
    inboxes = [Inbox() for _ in clients]

    def join(index: int) -> None:
        clients[index] = ipc(ALPHA if index % 2 else BETA)
        topic = "test/fanout"
        clients[index].subscribe_to_topic(topic=topic, receive_mode="RECEIVE_ALL_MESSAGES",
                                          on_stream_event=inboxes[index])

    threads = [threading.Thread(target=join, args=(i,)) for i in range(len(clients))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert all(client is not None for client in clients)
    clients[0].publish_to_topic(topic="test/fanout",
                                publish_message=model.PublishMessage(json_message=model.JsonMessage(message={"n": 1})))
    for inbox in inboxes:
        assert inbox.wait_for_count(1)[0].json_message.message == {"n": 1}
    assert core.stats()["connections_accepted"] == len(clients)
