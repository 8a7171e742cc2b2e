"""The status everywhere (bus, IoT Core, repeats), the recipe's grants at work, and deferring component updates."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from support import wait_for
from support.updater import JOINTS, FakeInference, UpdaterHarness, grants

from vla_edge import messages
from vla_edge.bus.memory import InMemoryBroker, UpdateAnswer

from .conftest import Published

RECIPE = Path(__file__).resolve().parents[3] / "components" / "model-updater" / "recipe.yaml"
UPDATER = "com.vlaedge.ModelUpdater"
TOPIC = "vla-edge/arm-7/model/status"


def recipe_access_control() -> dict[str, Any]:
    defaults = yaml.safe_load(RECIPE.read_text())["ComponentConfiguration"]["DefaultConfiguration"]
    return defaults["accessControl"]


# --- status ---------------------------------------------------------------------------------------


def test_status_goes_to_iot_core_on_change_and_is_repeated(broker: InMemoryBroker, v1: Published,
                                                           harness: Callable[..., UpdaterHarness]) -> None:
    updater = harness(reportPeriodS=10)
    updater.wait_status("active", v1.ref)
    wait_for(lambda: broker.iot_core_published)
    sent = broker.iot_core_published[0]
    assert (sent.topic, sent.qos, sent.component) == (TOPIC, 1, UPDATER)
    body = sent.json()
    assert body["kind"] == "model_status" and body["state"] == "active" and body["model"] == v1.ref.model_dump()
    assert body["policy_type"] == "act"

    before = updater.count()
    updater.clock.advance(10)
    repeat = updater.wait_status("active", v1.ref, after=before)
    wait_for(lambda: len(broker.iot_core_published) == 2)
    assert broker.iot_core_published[1].qos == 0 and repeat.detail == updater.statuses[0].detail


def test_without_a_grant_iot_core_is_skipped_and_the_local_status_goes_on(
        broker: InMemoryBroker, v1: Published, harness: Callable[..., UpdaterHarness],
        caplog: pytest.LogCaptureFixture) -> None:
    broker.enforce_access_control, broker.thing_name = True, "arm-7"
    access = recipe_access_control()
    del access["aws.greengrass.ipc.mqttproxy"]
    with caplog.at_level(logging.WARNING, logger="vla_edge.model_updater"):
        updater = harness(accessControl=access, reportPeriodS=10)
        updater.wait_status("active", v1.ref)
        updater.clock.advance(10)
        updater.wait_status("active", v1.ref, after=1)
        wait_for(lambda: updater.component.counters.get("iot_core.denied") == 2)
    assert broker.iot_core_published == []
    assert sum("not sent to AWS IoT Core" in r.getMessage() for r in caplog.records) == 1
    assert updater.bus.states == ["RUNNING"]


def test_the_recipe_grants_what_a_rollout_needs(broker: InMemoryBroker, fake: FakeInference, v1: Published,
                                                publish: Callable[..., Published],
                                                harness: Callable[..., UpdaterHarness]) -> None:
    broker.enforce_access_control, broker.thing_name = True, "arm-7"
    v2 = publish("2")
    updater = harness(accessControl=recipe_access_control(), model={"source": "local", "path": str(v2.path)},
                      probationS=5)
    fake.health()
    updater.wait_status("active", v2.ref)
    updater.advance(5, fake)
    wait_for(lambda: updater.component.counters.get("rollouts.succeeded") == 1)
    assert {m.topic for m in broker.iot_core_published} == {TOPIC}
    assert not any(k.startswith(("rejected", "publish_errors", "iot_core.denied"))
                   for k in updater.component.counters.snapshot())


def test_without_a_thing_name_nothing_goes_to_iot_core(broker: InMemoryBroker, v1: Published,
                                                       harness: Callable[..., UpdaterHarness],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_IOT_THING_NAME")
    updater = harness()
    updater.wait_status("active", v1.ref)
    assert updater.component.reporter.iot_topic is None and broker.iot_core_published == []


# --- deferring component updates ------------------------------------------------------------------


def joint_state(holding: bool, torque: bool = True) -> messages.JointState:
    return messages.JointState(t=time.time(), names=list(JOINTS), positions=[0.0] * len(JOINTS), holding=holding,
                               torque_enabled=torque, chunk_id=None if holding else "chunk-1",
                               action_index=None if holding else 4)


@pytest.fixture
def arm(broker: InMemoryBroker) -> Callable[[messages.JointState], None]:
    bus = broker.bus(grants("com.vlaedge.Actuator", publish=[messages.TOPIC_JOINT_STATE]), name="com.vlaedge.Actuator")
    return lambda state: bus.publish(*messages.encode(state))


def test_an_update_waits_while_the_arm_executes(broker: InMemoryBroker, v1: Published,
                                                harness: Callable[..., UpdaterHarness],
                                                arm: Callable[[messages.JointState], None]) -> None:
    updater = harness(deferRecheckS=2.5)
    updater.wait_status("active", v1.ref)
    arm(joint_state(holding=False))
    update = broker.start_component_update("deployment-7")
    (deferral,) = update.answers
    assert (deferral.component, deferral.recheck_after_ms, deferral.round) == (UPDATER, 2500, 1)
    assert deferral.message is not None and "executing" in deferral.message and "chunk-1" in deferral.message

    arm(joint_state(holding=True))
    update.ask()
    assert update.answers[-1] == UpdateAnswer(UPDATER, 0, update.answers[-1].message, 2)
    update.finish()
    assert update.finished and not update.unanswered
    counters = updater.component.counters
    assert (counters.get("updates.deferred"), counters.get("updates.allowed")) == (1, 1)


@pytest.mark.parametrize("state", ["stale", "torque_off", "never"])
def test_an_arm_that_is_not_moving_does_not_hold_updates(state: str, broker: InMemoryBroker, v1: Published,
                                                         harness: Callable[..., UpdaterHarness],
                                                         arm: Callable[[messages.JointState], None]) -> None:
    updater = harness()
    updater.wait_status("active", v1.ref)
    if state == "stale":
        arm(joint_state(holding=False))
        updater.clock.advance(2)  # the actuator went quiet: it moves nothing
    elif state == "torque_off":
        arm(joint_state(holding=False, torque=False))
    update = broker.update_components()
    assert (update.reason, update.rounds, update.deferrals) == ("not_deferred", 1, [])


def test_an_update_waits_for_a_model_switch(broker: InMemoryBroker, fake: FakeInference, v1: Published,
                                            publish: Callable[..., Published],
                                            harness: Callable[..., UpdaterHarness]) -> None:
    v2 = publish("2")
    fake.silent.add("activate:2")
    updater = harness(model={"source": "local", "path": str(v2.path)}, switchTimeoutS=600)
    updater.wait_status("switching")
    update = broker.start_component_update()
    (deferral,) = update.answers
    assert deferral.recheck_after_ms == 5000 and "model switch" in (deferral.message or "")
    update.finish()


def test_deferring_can_be_turned_off(broker: InMemoryBroker, v1: Published, harness: Callable[..., UpdaterHarness],
                                     arm: Callable[[messages.JointState], None]) -> None:
    updater = harness(deferComponentUpdates=False)
    updater.wait_status("active", v1.ref)
    arm(joint_state(holding=False))
    update = broker.update_components()
    assert update.deferrals == [] and update.rounds == 1
