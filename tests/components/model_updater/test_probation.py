"""Probation after a switch: regressions roll back, a quiet probation discards the previous model and prunes.

Also what the updater does when the inference component (re)starts on its own: serve the
recorded model again, or adopt the image's model when nothing is recorded.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from support import wait_for
from support.updater import FakeInference, Loaded, UpdaterHarness

from vla_edge.bus.memory import InMemoryBroker
from vla_edge.updater.store import ModelStore

from .conftest import Published

PROBATION_S = 30


def on_probation(harness: Callable[..., UpdaterHarness], fake: FakeInference, v2: Published,
                 **config: object) -> UpdaterHarness:
    updater = harness(start=False, model={"source": "local", "path": str(v2.path)}, probationS=PROBATION_S,
                      **config)
    fake.health()
    fake.health()  # chunks flow before the switch
    updater.start()
    updater.wait_status("active", v2.ref)
    wait_for(lambda: updater.component.metrics()["probation_remaining_s"] == PROBATION_S)
    return updater


def regress(kind: str, updater: UpdaterHarness, fake: FakeInference, v2: Published) -> None:
    if kind == "inference_errored":
        fake.health(state="ERRORED", detail="inference failed: RuntimeError: NaN in the action head")
    elif kind == "inference_errors":
        fake.health(errors=1)
    elif kind == "inference_silent":
        updater.clock.advance(6)
    elif kind == "chunks_stopped":
        updater.advance(11, fake, chunks=0)
    else:
        assert fake.serving is not None
        fake.restart(Loaded(v2.ref, fake.serving.path, 100.0))


@pytest.mark.parametrize("kind", ["inference_errored", "inference_errors", "inference_silent", "chunks_stopped",
                                  "inference_restarted"])
def test_a_regression_during_probation_rolls_back(kind: str, harness: Callable[..., UpdaterHarness],
                                                  fake: FakeInference, v1: Published,
                                                  publish: Callable[..., Published], store_dir: Path) -> None:
    v2 = publish("2")
    updater = on_probation(harness, fake, v2)
    assert fake.loaded() == [v2.ref, v1.ref], "v1 stays loaded beside for an instant rollback"
    mark = updater.count()
    regress(kind, updater, fake, v2)

    rolled_back = updater.wait_status("rolled_back", after=mark)
    back = updater.wait_status("active", v1.ref, after=mark)
    switching = updater.wait_status("switching", after=mark)
    assert (switching.model, switching.next_model) == (v2.ref, v1.ref)
    assert rolled_back.model == v1.ref and kind in rolled_back.detail and kind in back.detail
    assert updater.states()[-4:] == ["active", "switching", "rolled_back", "active"]
    record = ModelStore(store_dir).record()
    assert record.active == v1.ref and record.rolled_back == [v2.ref] and kind in record.reason
    assert fake.serving is not None and fake.serving.ref == v1.ref
    wait_for(lambda: fake.loaded() == [v1.ref])  # v2 discarded
    counters = updater.component.counters
    wait_for(lambda: counters.get(f"rollouts.rolled_back.{kind}") == 1)
    assert counters.get("rollouts.rolled_back") == 1 and counters.get("rollouts.succeeded") == 0
    wait_for(lambda: updater.bus.states[-1] == "ERRORED")
    assert "rolled back" in updater.component.detail
    assert updater.component.metrics()["probation_remaining_s"] is None


def test_a_rolled_back_version_is_not_rolled_out_again(harness: Callable[..., UpdaterHarness], fake: FakeInference,
                                                       v1: Published, publish: Callable[..., Published]) -> None:
    v2 = publish("2")
    first = on_probation(harness, fake, v2)
    fake.health(errors=1)
    first.wait_status("rolled_back")
    first.stop()
    again = harness(model={"source": "local", "path": str(v2.path)})  # same deployment, after a restart
    failed = again.wait_status("failed")
    assert "previously_rolled_back" in failed.detail and failed.next_model == v2.ref
    assert again.latest().model == v1.ref  # type: ignore[union-attr]
    assert [c.model for c in fake.commands if c.action == "stage"] == [v2.ref]


def test_a_quiet_probation_discards_the_previous_model_and_prunes(harness: Callable[..., UpdaterHarness],
                                                                  fake: FakeInference, v1: Published,
                                                                  publish: Callable[..., Published],
                                                                  store_dir: Path) -> None:
    v2 = publish("2")
    updater = on_probation(harness, fake, v2, keepPrevious=0)
    updater.advance(PROBATION_S - 5, fake)
    wait_for(lambda: (updater.component.metrics()["probation_remaining_s"] or 0) <= 5)
    assert fake.loaded() == [v2.ref, v1.ref] and updater.component.counters.get("rollouts.succeeded") == 0
    updater.advance(5, fake)
    passed = updater.wait_status("active", v2.ref, after=updater.count() - 1)
    wait_for(lambda: updater.component.counters.get("rollouts.succeeded") == 1)
    passed = updater.latest()
    assert passed is not None and "passed" in passed.detail
    assert fake.loaded() == [v2.ref]
    assert [(c.action, c.model.version) for c in fake.commands][-1] == ("discard", "1")
    store = ModelStore(store_dir)
    assert [m.ref for m in store.installed()] == [v2.ref] and store.record().active == v2.ref
    assert updater.component.metrics()["probation_remaining_s"] is None


def test_inference_restarting_with_another_model_is_told_to_serve_the_recorded_one(
        harness: Callable[..., UpdaterHarness], fake: FakeInference, v1: Published,
        publish: Callable[..., Published]) -> None:
    other = publish("9", name="baked")
    updater = harness()
    updater.wait_status("active", v1.ref)
    fake.restart(Loaded(other.ref, str(other.path), 100.0))
    wait_for(lambda: fake.serving is not None and fake.serving.ref == v1.ref)
    assert [(c.action, c.model.version) for c in fake.commands][-1] == ("activate", "1")
    assert fake.commands[-1].path.endswith("/1-" + v1.ref.sha256[:12])
    assert updater.latest().model == v1.ref  # type: ignore[union-attr]


def test_with_nothing_recorded_the_served_model_is_adopted_then_replaced_after_probation(
        broker: InMemoryBroker, harness: Callable[..., UpdaterHarness], publish: Callable[..., Published],
        store_dir: Path) -> None:
    baked, v2 = publish("0", name="baked"), publish("2")
    fake = FakeInference(broker, Loaded(baked.ref, "/opt/vla-edge/model", 100.0))
    updater = harness(probationS=PROBATION_S)
    assert updater.wait_status("none").model is None
    fake.announce()
    adopted = updater.wait_status("active", baked.ref)
    assert "adopted" in adopted.detail and adopted.path == "/opt/vla-edge/model"

    fake.health()
    fake.health()
    updater.bus.update_configuration(["model"], {"source": "local", "path": str(v2.path)})
    updater.wait_status("active", v2.ref)
    store = ModelStore(store_dir)
    assert store.record().active is None, "the store cannot record a return to the image's model: not yet"
    updater.advance(PROBATION_S, fake)
    wait_for(lambda: updater.component.counters.get("rollouts.succeeded") == 1)
    assert store.record().active == v2.ref and fake.loaded() == [v2.ref]


def test_a_regression_after_replacing_the_image_model_goes_back_to_it(
        broker: InMemoryBroker, harness: Callable[..., UpdaterHarness], publish: Callable[..., Published],
        store_dir: Path) -> None:
    baked, v2 = publish("0", name="baked"), publish("2")
    fake = FakeInference(broker, Loaded(baked.ref, "/opt/vla-edge/model", 100.0))
    updater = harness(probationS=PROBATION_S)
    updater.wait_status("none")
    fake.announce()
    updater.wait_status("active", baked.ref)
    updater.bus.update_configuration(["model"], {"source": "local", "path": str(v2.path)})
    updater.wait_status("active", v2.ref)
    fake.health(errors=3)
    back = updater.wait_status("active", baked.ref, after=updater.count() - 1)
    assert "inference_errors" in back.detail and back.path == "/opt/vla-edge/model"
    assert fake.serving is not None and fake.serving.ref == baked.ref
    assert ModelStore(store_dir).record().active is None


def test_a_first_rollout_with_nothing_to_go_back_to_skips_probation(
        broker: InMemoryBroker, harness: Callable[..., UpdaterHarness], publish: Callable[..., Published],
        store_dir: Path) -> None:
    baked, v2 = publish("0", name="baked"), publish("2")
    fake = FakeInference(broker, Loaded(baked.ref, "/opt/vla-edge/model", 100.0))
    fake.announce()  # before the updater runs: not heard
    updater = harness(model={"source": "local", "path": str(v2.path)}, probationS=PROBATION_S)
    updater.wait_status("none")
    wait_for(lambda: updater.component.counters.get("rollouts.succeeded") == 1)
    assert fake.serving is not None and fake.serving.ref == v2.ref
    assert ModelStore(store_dir).record().active == v2.ref
    assert "no previous model" in updater.latest().detail  # type: ignore[union-attr]


def test_an_updater_restarted_during_probation_frees_the_slot_for_the_next_rollout(
        harness: Callable[..., UpdaterHarness], fake: FakeInference, v1: Published,
        publish: Callable[..., Published], store_dir: Path) -> None:
    v2, v3 = publish("2"), publish("3")
    first = on_probation(harness, fake, v2)
    first.stop()  # v1 stays loaded beside v2 in the inference component
    assert fake.loaded() == [v2.ref, v1.ref]
    again = harness(model={"source": "local", "path": str(v3.path)})
    again.wait_status("active", v3.ref)
    stages = [(c.action, c.model.version) for c in fake.commands if c.action in ("stage", "discard")]
    assert stages[-4:] == [("stage", "3"), ("discard", "1"), ("stage", "3"), ("discard", "2")]
    assert fake.loaded() == [v3.ref] and ModelStore(store_dir).record().active == v3.ref
