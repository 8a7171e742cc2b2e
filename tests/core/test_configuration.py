"""Configuration IPC: GetConfiguration, UpdateConfiguration, update events, validation, UpdateState."""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import Any

import pytest
from awsiot.greengrasscoreipc import model
from support.ipc import ALPHA, ALPHA_CONFIG, BETA, GAMMA, Inbox, validator

from vla_edge.core.server import LocalCore
from vla_edge.errors import ConfigurationError, CoreError


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def without_acl(value: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in value.items() if k != "accessControl"}


def test_get_whole_configuration(ipc: Callable[..., Any]) -> None:
    response = ipc(ALPHA).get_configuration()
    assert response.component_name == ALPHA
    assert without_acl(response.value) == ALPHA_CONFIG
    assert "aws.greengrass.ipc.pubsub" in response.value["accessControl"]  # the nucleus returns it too


def test_get_container_returns_the_container(ipc: Callable[..., Any]) -> None:
    assert ipc(ALPHA).get_configuration(key_path=["mqtt"]).value == {"port": 443, "host": "localhost"}


@pytest.mark.parametrize(("key_path", "expected"), [
    (["mqtt", "port"], {"port": 443}),
    (["name"], {"name": "alpha"}),
    (["tags"], {"tags": ["a", "b"]}),  # a list is a leaf
])
def test_get_leaf_returns_name_and_value(ipc: Callable[..., Any], key_path: list[str], expected: Any) -> None:
    # The nucleus answers a leaf (Topic) as {leafName: value}, not the bare value.
    assert ipc(ALPHA).get_configuration(key_path=key_path).value == expected


def test_get_another_components_configuration(ipc: Callable[..., Any]) -> None:
    response = ipc(GAMMA).get_configuration(component_name=BETA, key_path=["gain"])
    assert (response.component_name, response.value) == (BETA, {"gain": 1.5})


@pytest.mark.parametrize(("component", "key_path"), [(None, ["mqtt", "nope"]), (None, ["name", "deeper"]),
                                                     ("com.test.Nobody", None)])
def test_missing_keys_and_components_are_resource_not_found(ipc: Callable[..., Any], component: str | None,
                                                            key_path: list[str] | None) -> None:
    with pytest.raises(model.ResourceNotFoundError) as raised:
        ipc(ALPHA).get_configuration(component_name=component, key_path=key_path)
    assert raised.value.message == "Key not found"


def test_update_merges_and_subscribers_get_events(core: LocalCore, ipc: Callable[..., Any]) -> None:
    alpha, watcher = ipc(ALPHA), ipc(BETA)
    own = Inbox()
    alpha.subscribe_to_configuration_update(key_path=["mqtt"], on_stream_event=own)
    cross = Inbox()
    watcher.subscribe_to_configuration_update(component_name=ALPHA, on_stream_event=cross)
    alpha.update_configuration(key_path=["mqtt"], value_to_merge={"port": 8883, "tls": {"verify": True}},
                               timestamp=now())
    assert alpha.get_configuration(key_path=["mqtt"]).value == {"port": 8883, "host": "localhost",
                                                                "tls": {"verify": True}}
    assert core.configuration(ALPHA)["mqtt"]["port"] == 8883
    events = own.wait_for_count(2)
    assert sorted(e.configuration_update_event.key_path for e in events) == [["mqtt", "port"],
                                                                            ["mqtt", "tls", "verify"]]
    assert {e.configuration_update_event.component_name for e in events} == {ALPHA}
    assert len(cross.wait_for_count(2)) == 2


def test_update_events_are_filtered_by_key_path(ipc: Callable[..., Any]) -> None:
    alpha = ipc(ALPHA)
    mqtt_only = Inbox()
    alpha.subscribe_to_configuration_update(key_path=["mqtt"], on_stream_event=mqtt_only)
    alpha.update_configuration(key_path=[], value_to_merge={"name": "renamed"}, timestamp=now())
    alpha.update_configuration(key_path=["mqtt"], value_to_merge={"host": "broker"}, timestamp=now())
    alpha.update_configuration(key_path=["mqtt"], value_to_merge={"host": "broker"}, timestamp=now())  # no change
    (event,) = mqtt_only.wait_for_count(1)
    assert event.configuration_update_event.key_path == ["mqtt", "host"]
    alpha.update_configuration(key_path=["mqtt"], value_to_merge={"port": 1}, timestamp=now())
    assert [e.configuration_update_event.key_path for e in mqtt_only.wait_for_count(2)] == [
        ["mqtt", "host"], ["mqtt", "port"]]


def test_update_with_an_older_timestamp_fails(ipc: Callable[..., Any]) -> None:
    alpha = ipc(ALPHA)
    alpha.update_configuration(key_path=["mqtt"], value_to_merge={"port": 1}, timestamp=now())
    with pytest.raises(model.FailedUpdateConditionCheckError):
        alpha.update_configuration(key_path=["mqtt"], value_to_merge={"port": 2},
                                   timestamp=now() - datetime.timedelta(hours=1))
    assert alpha.get_configuration(key_path=["mqtt", "port"]).value == {"port": 1}


def test_access_control_cannot_be_updated_over_ipc(ipc: Callable[..., Any]) -> None:
    with pytest.raises(model.InvalidArgumentsError) as raised:
        ipc(ALPHA).update_configuration(key_path=["accessControl"], value_to_merge={"x": 1}, timestamp=now())
    assert "accessControl" in raised.value.message
    with pytest.raises(model.InvalidArgumentsError):
        ipc(ALPHA).update_configuration(value_to_merge={"name": "x"})  # no timestamp


def test_subscribing_to_a_missing_key_is_resource_not_found(ipc: Callable[..., Any]) -> None:
    with pytest.raises(model.ResourceNotFoundError):
        ipc(ALPHA).subscribe_to_configuration_update(key_path=["missing"], on_stream_event=Inbox())


def test_proposed_configuration_accepted(core: LocalCore, ipc: Callable[..., Any]) -> None:
    seen = validator(ipc(ALPHA), lambda config: None)
    report = core.propose_configuration(ALPHA, {"name": "next", "mqtt": {"port": 1}}, timeout=10)
    assert report is not None and report.status == "ACCEPTED" and report.message is None
    (proposal,) = seen.items
    assert proposal.configuration == {"name": "next", "mqtt": {"port": 1}}
    assert proposal.deployment_id == report.deployment_id
    assert core.configuration(ALPHA)["name"] == "alpha"  # proposing alone changes nothing


def test_proposed_configuration_rejected_with_reason(core: LocalCore, ipc: Callable[..., Any]) -> None:
    validator(ipc(ALPHA), lambda config: None if config.get("fps", 0) <= 60 else "fps above 60 is not supported")
    report = core.propose_configuration(ALPHA, {"fps": 120}, timeout=10, apply=True)
    assert report is not None
    assert (report.status, report.message) == ("REJECTED", "fps above 60 is not supported")
    assert "fps" not in core.configuration(ALPHA)


def test_accepted_proposal_applied_notifies_subscribers(core: LocalCore, ipc: Callable[..., Any]) -> None:
    alpha = ipc(ALPHA)
    validator(alpha, lambda config: None)
    updates = Inbox()
    alpha.subscribe_to_configuration_update(on_stream_event=updates)
    new = {**core.configuration(ALPHA), "name": "applied"}
    report = core.propose_configuration(ALPHA, new, timeout=10, apply=True)
    assert report is not None and report.status == "ACCEPTED"
    assert core.configuration(ALPHA)["name"] == "applied"
    (event,) = updates.wait_for_count(1)
    assert event.configuration_update_event.key_path == ["name"]


def test_proposal_without_validator_and_unanswered_proposal(core: LocalCore, ipc: Callable[..., Any]) -> None:
    assert core.propose_configuration(BETA, {"gain": 2.0}, timeout=5) is None  # nobody validates: not asked
    silent = ipc(GAMMA)
    silent.subscribe_to_validate_configuration_updates(on_stream_event=Inbox())  # never answers
    with pytest.raises(CoreError, match="did not report"):
        core.propose_configuration(GAMMA, {"x": 2}, timeout=0.5)
    with pytest.raises(ConfigurationError, match="unknown component"):
        core.propose_configuration("com.test.Nobody", {}, timeout=1)


def test_report_for_an_unknown_deployment_is_invalid(ipc: Callable[..., Any]) -> None:
    report = model.ConfigurationValidityReport(status="ACCEPTED", deployment_id="never-asked")
    with pytest.raises(model.InvalidArgumentsError):
        ipc(ALPHA).send_configuration_validity_report(configuration_validity_report=report)


def test_update_state_is_recorded_per_component(core: LocalCore, ipc: Callable[..., Any]) -> None:
    assert core.component_states() == {}
    ipc(ALPHA).update_state(state="RUNNING")
    ipc(BETA).update_state(state="ERRORED")
    assert core.component_states() == {ALPHA: "RUNNING", BETA: "ERRORED"}
    ipc(ALPHA).update_state(state="ERRORED")
    assert core.wait_for_state(ALPHA, "ERRORED", timeout=5)
    with pytest.raises(model.InvalidArgumentsError):
        ipc(GAMMA).update_state(state="FINISHED")
    assert GAMMA not in core.component_states()
