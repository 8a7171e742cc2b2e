"""Configuration deployments (greengrass-cli's ``--update-config``) on a running core.

Components are the real awsiotsdk client (``ipc`` fixture): a validator that accepts or
rejects, configuration-update subscribers, a component that defers the update step.
Stream callbacks run on the SDK's network thread, so they answer with ``_async`` calls.
"""

from __future__ import annotations

import copy
import datetime
import json
import socket
from collections.abc import Callable
from typing import Any

import pytest
from awsiot.greengrasscoreipc import model
from support import wait_for
from support.ipc import ALPHA, ALPHA_CONFIG, BETA, GAMMA, Inbox, validator

from vla_edge.core.control import CONTROL_SOCKET_NAME
from vla_edge.core.deployments import (
    ConfigurationUpdate,
    DeploymentResult,
    apply_update,
    parse_update_config,
)
from vla_edge.core.server import MONITOR_COMPONENT, LocalCore
from vla_edge.errors import ConfigurationError

DEFAULTS: dict[str, Any] = {"name": "alpha", "mqtt": {"port": 443, "host": "localhost"}, "tags": ["a", "b"],
                            "odd/key~": 1}


def without_acl(value: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in value.items() if k != "accessControl"}


class Deferrer:
    """A component subscribed to component updates; ``decide(asked)`` -> (recheckAfterMs, message)."""

    def __init__(self, client: Any, decide: Callable[[int], tuple[int, str]]) -> None:
        self.client, self.decide = client, decide
        self.events = Inbox()
        self.asked = 0
        client.subscribe_to_component_updates(on_stream_event=self._on_event)

    def _on_event(self, event: model.ComponentUpdatePolicyEvents) -> None:
        self.events(event)
        if event.pre_update_event is not None:
            self.asked += 1
            recheck, message = self.decide(self.asked)
            self.client.defer_component_update_async(deployment_id=event.pre_update_event.deployment_id,
                                                     message=message, recheck_after_ms=recheck)

    def kinds(self) -> list[str]:
        return ["pre" if e.pre_update_event is not None else "post" for e in self.events.items]


# -- resets and merges, as the nucleus applies them ------------------------------------------------------


@pytest.mark.parametrize(("current", "reset", "merge", "expected"), [
    ({**DEFAULTS, "name": "x"}, ["/name"], {}, DEFAULTS),  # back to the default
    ({**DEFAULTS, "extra": {"a": 1}}, ["/extra"], {}, DEFAULTS),  # no default: removed
    ({**DEFAULTS, "mqtt": {"port": 1, "tls": True}}, ["/mqtt/port"], {}, {**DEFAULTS, "mqtt": {
        "port": 443, "tls": True}}),
    ({"name": "x", "mqtt": {}, "more": 1}, [""], {}, DEFAULTS),  # "" is the whole configuration
    ({**DEFAULTS, "tags": ["z"]}, ["/tags"], {"tags": ["c"]}, {**DEFAULTS, "tags": ["c"]}),  # reset, then merge
    ({**DEFAULTS, "mqtt": {"port": 1, "stale": 2}}, ["/mqtt"], {"mqtt": {"port": 8883}}, {
        **DEFAULTS, "mqtt": {"port": 8883, "host": "localhost"}}),
    ({**DEFAULTS, "odd/key~": 5}, ["/odd~1key~0"], {}, DEFAULTS),  # RFC 6901 escapes
    ({"name": "x"}, ["/mqtt/port"], {}, {"name": "x", "mqtt": {"port": 443}}),  # restored from the default
    (DEFAULTS, ["/missing", "/missing/deeper"], {}, DEFAULTS),  # names nothing: nothing to do
])
def test_resets_then_merge(current: dict[str, Any], reset: list[str], merge: dict[str, Any],
                           expected: dict[str, Any]) -> None:
    before = copy.deepcopy(current)
    assert apply_update(current, DEFAULTS, ConfigurationUpdate(tuple(reset), merge)) == expected
    assert current == before  # a new configuration; the current one is left alone


@pytest.mark.parametrize(("document", "message"), [
    ({ALPHA: {"RESET": ["name"]}}, "must start with '/'"),
    ({ALPHA: {"RESET": ["/a~2"]}}, "'~' must be written ~0"),
    ({ALPHA: {"RESET": "/name"}}, "RESET must be a list of JSON pointers"),
    ({ALPHA: {"merge": {"a": 1}}}, "unknown key(s) ['merge']"),
    ({ALPHA: {"MERGE": "{\"a\": 1}"}}, "MERGE must be an object"),
    ({ALPHA: []}, "expected an object with RESET and/or MERGE"),
    ({}, "non-empty object"),
])
def test_malformed_updates_are_refused(document: Any, message: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        parse_update_config(document)
    assert message in str(raised.value)


@pytest.mark.parametrize(("pointer", "message"), [
    ("/tags/0", "goes into /tags, which is a list (lists reset only as a whole)"),
    ("/name/first", "goes into /name, which is a value"),
])
def test_pointers_through_lists_and_values_are_refused(pointer: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match="RESET pointer") as raised:
        apply_update(DEFAULTS, DEFAULTS, ConfigurationUpdate((pointer,)), ALPHA)
    assert message in str(raised.value) and ALPHA in str(raised.value)


# -- on a running core, with components over the real SDK -------------------------------------------------


def test_accepted_deployment_changes_the_configuration_and_tells_subscribers(core: LocalCore,
                                                                            ipc: Callable[..., Any]) -> None:
    alpha = ipc(ALPHA)
    proposals = validator(alpha, lambda config: None)
    updates = Inbox()
    ipc(BETA).subscribe_to_configuration_update(component_name=ALPHA, on_stream_event=updates)
    result = core.deploy_configuration({ALPHA: {"MERGE": {"name": "v2", "mqtt": {"port": 8883}}}}, "dep-1",
                                       recheck_min_s=0)
    assert (result.deployment_id, result.status, result.error) == ("dep-1", "SUCCEEDED", None)
    (entry,) = result.components
    assert (entry.component, entry.validation, entry.changed) == (ALPHA, "ACCEPTED", ("/mqtt/port", "/name"))
    expected = {**ALPHA_CONFIG, "name": "v2", "mqtt": {"port": 8883, "host": "localhost"}}
    assert without_acl(entry.configuration) == expected == without_acl(core.configuration(ALPHA))
    (proposal,) = proposals.items  # the whole new configuration, under the deployment's id
    assert proposal.deployment_id == "dep-1" and without_acl(proposal.configuration) == expected
    assert sorted(e.configuration_update_event.key_path for e in updates.wait_for_count(2)) == [
        ["mqtt", "port"], ["name"]]
    assert result.update is not None and result.update.reason == "no_subscribers"
    assert DeploymentResult.from_dict(json.loads(json.dumps(result.to_dict()))) == result


def test_rejected_deployment_changes_nothing_and_says_why(core: LocalCore, ipc: Callable[..., Any]) -> None:
    validator(ipc(ALPHA), lambda config: None)
    validator(ipc(BETA), lambda config: f"gain {config['gain']} is above 3" if config["gain"] > 3 else None)
    before = {name: core.configuration(name) for name in (ALPHA, BETA)}
    result = core.deploy_configuration({ALPHA: {"MERGE": {"name": "ok"}}, BETA: {"MERGE": {"gain": 9}}})
    assert result.status == "FAILED" and result.update is None  # no update step: nobody was paused
    assert result.error == f"{BETA} rejected the configuration: gain 9 is above 3"
    verdicts = {c.component: (c.validation, c.message) for c in result.components}
    assert verdicts == {ALPHA: ("ACCEPTED", None), BETA: ("REJECTED", "gain 9 is above 3")}
    assert {name: core.configuration(name) for name in (ALPHA, BETA)} == before  # not even the accepted one
    assert core.stats()["component_updates"] == 0


def test_reset_removes_keys_and_restores_recipe_defaults(core_factory: Callable[..., LocalCore]) -> None:
    core = core_factory(overrides={GAMMA: {"x": 5, "local": "override"}})
    first = core.deploy_configuration({GAMMA: {"MERGE": {"extra": {"a": 1}, "y": [1, 2]}}})
    assert without_acl(core.configuration(GAMMA)) == {"x": 5, "local": "override", "extra": {"a": 1}, "y": [1, 2]}
    assert first.components[0].validation == "NO_VALIDATOR"
    second = core.deploy_configuration({GAMMA: {"RESET": ["/extra", "/x", "/local", "/never"]}})
    assert core.configuration(GAMMA) == {"x": 1, "y": [1, 2]}  # x: the recipe's default; the rest had none
    assert second.components[0].changed == ("/extra/a", "/local", "/x")
    unchanged = core.deploy_configuration({GAMMA: {"RESET": ["/extra"]}})
    assert unchanged.status == "SUCCEEDED" and unchanged.components[0].validation == "UNCHANGED"
    assert core.deploy_configuration({GAMMA: {"MERGE": {"empty": {}}}}).components[0].changed == ("/empty",)
    assert core.configuration(GAMMA) == {"x": 1, "y": [1, 2], "empty": {}}
    assert core.deploy_configuration({GAMMA: {"RESET": ["/empty"]}}).components[0].changed == ("/empty",)
    assert core.configuration(GAMMA) == {"x": 1, "y": [1, 2]}


def test_deferring_component_holds_the_change_back(core: LocalCore, ipc: Callable[..., Any]) -> None:
    seen_at_pre_update: list[str] = []

    def busy_once(asked: int) -> tuple[int, str]:
        seen_at_pre_update.append(core.configuration(ALPHA)["name"])
        return (40, "arm executing a chunk") if asked == 1 else (0, "holding")

    deferrer = Deferrer(ipc(BETA), busy_once)
    updates = Inbox()
    ipc(ALPHA).subscribe_to_configuration_update(key_path=["name"], on_stream_event=updates)
    result = core.deploy_configuration({ALPHA: {"MERGE": {"name": "later"}}}, "held", timeout_s=30, recheck_min_s=0)
    assert result.status == "SUCCEEDED" and result.update is not None
    assert (result.update.reason, result.update.rounds) == ("not_deferred", 2)
    assert [(r.component, r.recheck_after_ms, r.message) for r in result.update.deferrals] == [
        (BETA, 40, "arm executing a chunk")]
    assert seen_at_pre_update == ["alpha", "alpha"]  # not applied while the update step was asking
    assert core.configuration(ALPHA)["name"] == "later"
    updates.wait_for_count(1)
    wait_for(lambda: deferrer.kinds() == ["pre", "pre", "post"])


def test_skip_notify_applies_without_asking_a_deferring_component(core: LocalCore, ipc: Callable[..., Any]) -> None:
    deferrer = Deferrer(ipc(BETA), lambda asked: (40, "arm executing a chunk"))
    updates = Inbox()
    ipc(ALPHA).subscribe_to_configuration_update(key_path=["name"], on_stream_event=updates)
    result = core.deploy_configuration({ALPHA: {"MERGE": {"name": "now"}}}, "quiet", notify=False)
    assert result.status == "SUCCEEDED" and result.update is None  # SKIP_NOTIFY_COMPONENTS: nobody asked
    assert core.configuration(ALPHA)["name"] == "now"
    updates.wait_for_count(1)
    assert deferrer.kinds() == []


def test_configuration_changed_during_the_wait_fails_the_deployment(core: LocalCore,
                                                                   ipc: Callable[..., Any]) -> None:
    alpha = ipc(ALPHA)

    def write_then_go(asked: int) -> tuple[int, str]:
        if asked == 1:
            alpha.update_configuration_async(key_path=["mqtt"], value_to_merge={"port": 1},
                                             timestamp=datetime.datetime.now(datetime.UTC))
            return 20, "writing my configuration"
        return 0, "done"

    Deferrer(alpha, write_then_go)
    result = core.deploy_configuration({ALPHA: {"MERGE": {"name": "mine"}}}, timeout_s=30, recheck_min_s=0)
    assert result.status == "FAILED" and result.update is not None
    assert f"the configuration of {ALPHA} changed while the deployment waited" in (result.error or "")
    assert core.configuration(ALPHA)["name"] == "alpha" and core.configuration(ALPHA)["mqtt"]["port"] == 1


def test_silent_validator_does_not_block_the_deployment(core: LocalCore, ipc: Callable[..., Any]) -> None:
    ipc(ALPHA).subscribe_to_validate_configuration_updates(on_stream_event=Inbox())  # never answers
    result = core.deploy_configuration({ALPHA: {"MERGE": {"name": "anyway"}}}, validation_timeout_s=0.2)
    assert result.status == "SUCCEEDED" and result.components[0].validation == "NO_ANSWER"
    assert core.configuration(ALPHA)["name"] == "anyway"


def test_deployed_access_control_takes_effect(core: LocalCore, ipc: Callable[..., Any]) -> None:
    gamma = ipc(GAMMA)
    with pytest.raises(model.UnauthorizedError):
        gamma.publish_to_topic(topic="test/gamma", publish_message=model.PublishMessage(json_message=model.JsonMessage(message={})))
    policy = {"aws.greengrass.ipc.pubsub": {f"{GAMMA}:pubsub:1": {
        "policyDescription": "deployed", "operations": ["aws.greengrass#PublishToTopic"], "resources": ["test/gamma"]}}}
    assert core.deploy_configuration({GAMMA: {"MERGE": {"accessControl": policy}}}).status == "SUCCEEDED"
    gamma.publish_to_topic(topic="test/gamma", publish_message=model.PublishMessage(json_message=model.JsonMessage(message={})))


@pytest.mark.parametrize(("document", "message"), [
    ({"com.test.Nobody": {"MERGE": {"a": 1}}}, "unknown component 'com.test.Nobody'; this core runs: "),
    ({MONITOR_COMPONENT: {"MERGE": {"a": 1}}}, "built into the core"),
    ({ALPHA: {"MERGE": {"name": "x"}}, GAMMA: {"RESET": ["/x/deeper"]}}, "goes into /x, which is a value"),
    ({GAMMA: {"MERGE": {"accessControl": {"aws.greengrass.ipc.pubsub": 3}}}}, "accessControl"),
])
def test_request_errors_change_nothing(core: LocalCore, document: dict[str, Any], message: str) -> None:
    before = core.configuration(ALPHA)
    with pytest.raises(ConfigurationError) as raised:
        core.deploy_configuration(document)
    assert message in str(raised.value)
    assert core.configuration(ALPHA) == before and core.stats()["component_updates"] == 0


def test_control_client_hanging_up_cancels_the_deployment(core: LocalCore, ipc: Callable[..., Any]) -> None:
    deferrer = Deferrer(ipc(ALPHA), lambda _asked: (20, "busy"))
    control = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    control.connect(str(core.run_dir / CONTROL_SOCKET_NAME))
    request = {"op": "deploy-configuration", "deploymentId": "abandoned", "recheckMinS": 0,
               "update": {ALPHA: {"MERGE": {"name": "never"}}}}
    control.sendall(json.dumps(request).encode() + b"\n")
    wait_for(lambda: deferrer.asked >= 2)
    control.close()
    wait_for(lambda: deferrer.kinds()[-1:] == ["post"])  # told at once that the update will not happen
    assert core.configuration(ALPHA)["name"] == "alpha"
    assert core.deploy_configuration({GAMMA: {"MERGE": {"x": 2}}}, max_wait_s=0.2).status == "SUCCEEDED"


def test_control_socket_answers_request_errors(core: LocalCore) -> None:
    def ask(request: dict[str, Any]) -> dict[str, Any]:
        control = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        control.connect(str(core.run_dir / CONTROL_SOCKET_NAME))
        control.sendall(json.dumps(request).encode() + b"\n")
        answer: dict[str, Any] = json.loads(control.makefile("rb").readline())
        control.close()
        return answer

    bad = ask({"op": "deploy-configuration", "update": {ALPHA: {"RESET": ["nope"]}}})
    assert bad["ok"] is False and "must start with '/'" in bad["error"]
    bad = ask({"op": "deploy-configuration", "update": {ALPHA: {}}, "timeoutS": "soon"})
    assert bad["ok"] is False and "bad deploy-configuration request" in bad["error"]
    bad = ask({"op": "deploy-configuration", "update": {ALPHA: {"MERGE": {"name": "x"}}}, "timeoutS": 0})
    assert bad["ok"] is False and "timeout must be positive" in bad["error"]
    assert core.configuration(ALPHA)["name"] == "alpha"
    assert ask({"op": "get-configuration", "component": BETA}) == {"ok": True, "configuration": {
        **core.configuration(BETA)}}
    assert "unknown component" in ask({"op": "get-configuration", "component": "x"})["error"]
