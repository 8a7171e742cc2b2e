from __future__ import annotations

import pytest

from vla_edge.bus.semantics import topic_matches, validate_filter
from vla_edge.bus.memory import InMemoryBroker
from vla_edge.errors import BusError, ConfigurationError


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
