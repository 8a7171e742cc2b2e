"""The actuator executes only chunks from the active model (``vla-edge/model/status``)."""

from __future__ import annotations

import logging
import time

import pytest
from support.actuator import MODEL, actuator_config, chunk
from support.servos import FakeServoBus

from vla_edge import messages
from vla_edge.bus.memory import InMemoryBroker
from vla_edge.components.actuator.component import ActuatorComponent

OTHER = messages.ModelRef(name="other-policy", version="1", sha256="cd" * 32)
ACTIONS = [[1.0, 0.0, 0.0, 0.0, 0.0, 0.0]] * 10


@pytest.fixture
def actuator():
    broker = InMemoryBroker()
    component = ActuatorComponent(
        broker.bus(), actuator_config("fake://servos"), servos=FakeServoBus()
    )
    component.subscribe()
    yield broker, component
    component.close()


def send(broker: InMemoryBroker, message: messages.Message) -> None:
    topic, payload = messages.encode(message)
    broker.bus().publish(topic, payload)


def status(
    model: messages.ModelRef | None, state: str = "active"
) -> messages.ModelStatus:
    return messages.ModelStatus(t=time.time(), state=state, model=model)


def from_model(model: messages.ModelRef) -> messages.ActionChunk:
    return chunk(ACTIONS).model_copy(update={"model": model})


def test_chunks_are_accepted_before_any_model_status_and_that_is_logged_once(
    actuator, caplog
) -> None:
    broker, component = actuator
    with caplog.at_level(logging.INFO, logger="vla_edge.actuator"):
        send(broker, from_model(MODEL))
        send(broker, from_model(OTHER))
    assert component.counters.get("rejected.inactive_model") == 0
    assert len(component.schedule) > 0
    notes = [
        r for r in caplog.records if "no active model confirmed yet" in r.getMessage()
    ]
    assert len(notes) == 1


def test_chunks_from_the_active_model_are_accepted_others_rejected_and_counted(
    actuator, caplog
) -> None:
    broker, component = actuator
    send(broker, status(MODEL))
    send(broker, from_model(MODEL))
    assert len(component.schedule) == len(ACTIONS)
    with caplog.at_level(logging.WARNING, logger="vla_edge.actuator"):
        send(broker, from_model(OTHER))  # another name
        send(
            broker, from_model(MODEL.model_copy(update={"version": "2"}))
        )  # same name, another version
        send(
            broker, from_model(MODEL.model_copy(update={"sha256": "ef" * 32}))
        )  # same name and version, other weights
    assert component.counters.get("rejected.inactive_model") == 3
    assert len(component.schedule) == len(
        ACTIONS
    )  # nothing from the rejected chunks was queued
    warnings = [
        r for r in caplog.records if "rejected action chunk from" in r.getMessage()
    ]
    assert len(warnings) == 1  # rate-limited: the other two are held back
    assert (
        "other-policy" in warnings[0].getMessage()
        and "test-policy" in warnings[0].getMessage()
    )


def test_a_model_switch_moves_acceptance_to_the_new_model(actuator) -> None:
    broker, component = actuator
    send(broker, status(MODEL))
    send(broker, status(OTHER))
    send(broker, from_model(MODEL))
    assert component.counters.get("rejected.inactive_model") == 1
    assert len(component.schedule) == 0
    send(broker, from_model(OTHER))
    assert len(component.schedule) == len(ACTIONS)
    assert component.counters.get("model.active_changed") == 2


@pytest.mark.parametrize("state", ["staging", "failed", "rolled_back", "none"])
def test_a_status_that_is_not_active_leaves_the_active_model_as_it_is(
    actuator, state: str
) -> None:
    broker, component = actuator
    send(broker, status(MODEL))
    send(broker, status(OTHER, state=state))
    send(broker, from_model(MODEL))
    assert len(component.schedule) == len(ACTIONS)
    send(broker, from_model(OTHER))
    assert component.counters.get("rejected.inactive_model") == 1


def test_an_active_status_without_a_model_confirms_nothing(actuator) -> None:
    broker, component = actuator
    send(broker, status(None))
    send(broker, from_model(OTHER))
    assert component.counters.get("rejected.inactive_model") == 0
    assert len(component.schedule) == len(ACTIONS)


def test_the_recipe_lets_the_actuator_subscribe_to_model_status() -> None:
    from pathlib import Path

    import yaml

    recipe = yaml.safe_load(
        (Path(__file__).parents[3] / "components/actuator/recipe.yaml").read_text()
    )
    acl = recipe["ComponentConfiguration"]["DefaultConfiguration"]["accessControl"][
        "aws.greengrass.ipc.pubsub"
    ]
    subscribed = {
        r
        for p in acl.values()
        if "aws.greengrass#SubscribeToTopic" in p["operations"]
        for r in p["resources"]
    }
    assert messages.TOPIC_MODEL_STATUS in subscribed


def switching(
    current: messages.ModelRef, incoming: messages.ModelRef, hold: bool = False, next_norm_mode: str | None = None
) -> messages.ModelStatus:
    return messages.ModelStatus(
        t=time.time(), state="switching", model=current, next_model=incoming, hold=hold, next_norm_mode=next_norm_mode
    )


def test_during_a_switch_both_models_are_accepted_then_only_the_new_one(actuator) -> None:
    broker, component = actuator
    send(broker, status(MODEL))
    send(broker, switching(MODEL, OTHER))
    send(broker, from_model(MODEL))
    send(broker, from_model(OTHER))
    assert component.counters.get("rejected.inactive_model") == 0
    send(broker, status(OTHER))  # the switch is over: the old model's chunks are refused again
    send(broker, from_model(MODEL))
    assert component.counters.get("rejected.inactive_model") == 1
    assert component.intake.incoming is None


def test_a_hold_switch_drops_the_plan_holds_and_refuses_the_old_model(actuator) -> None:
    broker, component = actuator
    send(broker, status(MODEL))
    component._tick()  # connect: the arm holds
    send(broker, from_model(MODEL))
    assert len(component.schedule) > 0
    send(broker, switching(MODEL, OTHER, hold=True))
    component._tick()
    assert len(component.schedule) == 0
    assert component.counters.get("actions_dropped.model_switch") > 0
    assert component.arm.holding
    send(broker, from_model(MODEL))  # the serving model is being unloaded: its late chunks are refused
    assert component.counters.get("rejected.hold_switch") == 1 and len(component.schedule) == 0
    send(broker, from_model(OTHER))
    assert len(component.schedule) > 0


def test_the_incoming_models_norm_mode_is_checked_during_the_switch(actuator) -> None:
    broker, component = actuator  # uncalibrated: raw degrees are no LeRobot units
    send(broker, status(MODEL))
    send(broker, switching(MODEL, OTHER, next_norm_mode="degrees"))
    send(broker, from_model(OTHER))
    assert component.counters.get("rejected.norm_mode_mismatch") == 1
    assert len(component.schedule) == 0
