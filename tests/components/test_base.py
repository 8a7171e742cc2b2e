"""The shared runtime: every kind of bad input is logged with its reason, counted, and survived."""

from __future__ import annotations

import json
import logging

import pytest

from vla_edge import messages
from vla_edge.bus.memory import InMemoryBroker
from vla_edge.components.base import Counters, MessageRouter

REF = messages.ModelRef(name="m", version="1", sha256="b" * 64)


def good_chunk() -> dict:
    chunk = messages.ActionChunk(
        model=REF, t_created=1.0, t_observation=1.0, t_start=1.0, dt=0.1, names=["a"], actions=[[0.0]]
    )
    return messages.encode(chunk)[1]  # type: ignore[return-value]


@pytest.fixture
def router(broker: InMemoryBroker) -> tuple[MessageRouter, list[messages.Message]]:
    received: list[messages.Message] = []
    router = MessageRouter(broker.bus(), Counters(), logging.getLogger("test"))
    router.subscribe("vla-edge/#", received.append, messages.ActionChunk)
    return router, received


def test_each_bad_input_is_counted_by_reason_and_logged(
    router: tuple[MessageRouter, list[messages.Message]], broker: InMemoryBroker, caplog: pytest.LogCaptureFixture
) -> None:
    r, received = router
    sender = broker.bus()
    topic = messages.TOPIC_ACTION_CHUNK
    nan_chunk = good_chunk()
    nan_chunk["actions"] = [[float("nan")]]
    sender.publish(topic, b"{broken json")
    sender.publish(topic, {**good_chunk(), "schema": 7})
    sender.publish(topic, b" " * (messages.MAX_JSON_BYTES + 1))
    sender.publish(topic, nan_chunk)
    sender.publish("vla-edge/not/a/contract", good_chunk())
    sender.publish(messages.TOPIC_INSTRUCTION, messages.encode(messages.TaskInstruction(text="hi"))[1])
    sender.publish(topic, good_chunk())
    assert len(received) == 1 and isinstance(received[0], messages.ActionChunk)
    assert r.counters.snapshot() == {
        "rejected.malformed": 1,
        "rejected.unsupported_schema": 1,
        "rejected.oversized": 1,
        "rejected.invalid": 1,
        "rejected.unexpected_topic": 2,
        "received.action_chunk": 1,
    }
    reasons = [rec.getMessage() for rec in caplog.records if rec.levelno == logging.WARNING]
    assert len(reasons) == 6
    assert any("schema 7" in text for text in reasons)
    assert any("non-finite" in text for text in reasons)


def test_a_failing_handler_is_counted_and_does_not_break_delivery(broker: InMemoryBroker) -> None:
    calls: list[int] = []

    def handler(_message: messages.Message) -> None:
        calls.append(1)
        raise RuntimeError("bug in handler")

    router = MessageRouter(broker.bus(), Counters(), logging.getLogger("test"))
    router.subscribe(messages.TOPIC_ACTION_CHUNK, handler, messages.ActionChunk)
    broker.bus().publish(messages.TOPIC_ACTION_CHUNK, good_chunk())
    broker.bus().publish(messages.TOPIC_ACTION_CHUNK, json.dumps(good_chunk()).encode())
    assert len(calls) == 2
    assert router.counters.get("handler_errors") == 2
