"""Rollouts from a local directory against a fake inference component on the in-memory bus."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from support import wait_for
from support.updater import FakeInference, Loaded, UpdaterHarness

from vla_edge import messages
from vla_edge.bus.memory import InMemoryBroker
from vla_edge.components.model_updater.config import so101_joint_limits
from vla_edge.models import directory_digest
from vla_edge.updater.store import ModelStore

from .conftest import Published


def actions(fake: FakeInference) -> list[tuple[str, str]]:
    return [(c.action, c.model.version) for c in fake.commands]


def test_local_rollout_v1_to_v2(harness: Callable[..., UpdaterHarness], fake: FakeInference, v1: Published,
                                publish: Callable[..., Published], store_dir: Path) -> None:
    v2 = publish("2")
    store = ModelStore(store_dir)
    recorded_when: dict[str, str | None] = {}

    def look_at_the_store(command: messages.ModelCommand) -> None:
        active = store.record().active
        recorded_when[f"{command.action} {command.model.version}"] = active.version if active else None

    fake.on_command = look_at_the_store
    updater = harness(model={"source": "local", "path": str(v2.path)})
    wait_for(lambda: updater.component.counters.get("rollouts.succeeded") == 1)

    assert updater.states() == ["active", "staging", "switching", "active"]
    first, switching = updater.statuses[0], updater.wait_status("switching")
    assert (first.model, first.policy_type) == (v1.ref, "act")
    assert (switching.model, switching.next_model, switching.hold) == (v1.ref, v2.ref, False)
    active = updater.wait_status("active", v2.ref)
    installed = store.get(v2.ref)
    assert installed is not None and active.path == str(installed.path)
    assert directory_digest(installed.path) == v2.ref.sha256
    assert any("fetching 100%" in s.detail for s in updater.statuses if s.state == "staging")

    # the inference component: told to keep v1 on start, then stage, activate, and finally drop v1
    assert actions(fake) == [("activate", "1"), ("stage", "2"), ("activate", "2"), ("discard", "1")]
    stage = fake.commands[1]
    assert stage.path == str(installed.path) and stage.memory_mb == v2.manifest.memory_mb
    assert stage.joint_limits == so101_joint_limits() and stage.allow_unload is False
    assert recorded_when["activate 2"] == "1", "v2 is recorded active only once it serves"
    assert store.record().active == v2.ref and store.record().previous == [v1.ref]
    assert fake.loaded() == [v2.ref]
    assert updater.bus.states[-1] == "RUNNING"
    counters = updater.component.counters.snapshot()
    assert counters["rollouts.started"] == 1 and counters["downloads.bytes"] == v2.manifest.total_bytes
    metrics = updater.component.metrics()
    assert metrics["verify_to_serving_s"] is not None and metrics["probation_remaining_s"] is None


def test_a_configuration_update_rolls_out_the_new_desired_model(harness: Callable[..., UpdaterHarness],
                                                                 fake: FakeInference, v1: Published,
                                                                 publish: Callable[..., Published]) -> None:
    v2 = publish("2")
    updater = harness()
    updater.wait_status("active", v1.ref)
    assert updater.component.counters.get("rollouts.started") == 0
    updater.bus.update_configuration(["model"], {"source": "local", "path": str(v2.path)})
    updater.wait_status("active", v2.ref)
    assert fake.serving is not None and fake.serving.ref == v2.ref


def assert_v1_still_serves(updater: UpdaterHarness, fake: FakeInference, v1: Published, store_dir: Path,
                           reason: str) -> messages.ModelStatus:
    failed = updater.wait_status("failed")
    wait_for(lambda: updater.component.counters.get(f"rollouts.failed.{reason}") == 1)
    wait_for(lambda: updater.states()[-2:] == ["failed", "active"])  # "active" (v1 serves) follows "failed"
    assert failed.model == v1.ref and reason in failed.detail
    assert updater.latest().model == v1.ref  # type: ignore[union-attr]
    store = ModelStore(store_dir)
    assert store.record().active == v1.ref and [m.ref for m in store.installed()] == [v1.ref]
    assert fake.serving is not None and fake.serving.ref == v1.ref
    wait_for(lambda: updater.bus.states[-1] == "ERRORED")
    assert reason in updater.component.detail
    return failed


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_a_corrupt_download_is_refused_and_v1_keeps_serving(damage: str, harness: Callable[..., UpdaterHarness],
                                                             fake: FakeInference, v1: Published,
                                                             publish: Callable[..., Published],
                                                             store_dir: Path) -> None:
    v2 = publish("2")
    weights = v2.path / "model.safetensors"
    data = bytearray(weights.read_bytes())
    if damage == "flip":
        data[-1] ^= 0xFF  # same size, other bytes: only the sha256 tells
    else:
        del data[len(data) // 2:]
    weights.write_bytes(bytes(data))
    updater = harness(model={"source": "local", "path": str(v2.path)})
    failed = assert_v1_still_serves(updater, fake, v1, store_dir, "verification_failed")
    assert failed.next_model == v2.ref
    assert ("stage", "2") not in actions(fake), "an unverified model never reaches the inference component"


@pytest.mark.parametrize(("inject", "reason"), [
    ({"stage": "load_failed"}, "load_failed"),
    ({"activate": "inference_failed"}, "inference_failed"),
])
def test_a_model_the_inference_component_refuses(inject: dict[str, str], reason: str,
                                                 harness: Callable[..., UpdaterHarness], fake: FakeInference,
                                                 v1: Published, publish: Callable[..., Published],
                                                 store_dir: Path) -> None:
    v2 = publish("2")
    ((action, label),) = inject.items()
    fake.failures["2"] = (action, label)
    updater = harness(model={"source": "local", "path": str(v2.path)})
    assert_v1_still_serves(updater, fake, v1, store_dir, reason)
    assert fake.loaded() == [v1.ref], "the refused model was unloaded"
    if action == "stage":
        assert ("activate", "2") not in actions(fake)


def test_wrong_features_are_a_feature_mismatch(harness: Callable[..., UpdaterHarness], fake: FakeInference,
                                               v1: Published, publish: Callable[..., Published],
                                               store_dir: Path) -> None:
    v2 = publish("2", joints=5)
    updater = harness(model={"source": "local", "path": str(v2.path)})
    failed = assert_v1_still_serves(updater, fake, v1, store_dir, "feature_mismatch")
    assert "5" in failed.detail


def test_a_failed_version_is_not_retried_until_the_desired_model_changes(
        harness: Callable[..., UpdaterHarness], fake: FakeInference, v1: Published,
        publish: Callable[..., Published], store_dir: Path) -> None:
    v2, v3 = publish("2"), publish("3")
    fake.failures["2"] = ("stage", "load_failed")
    updater = harness(model={"source": "local", "path": str(v2.path)})
    assert_v1_still_serves(updater, fake, v1, store_dir, "load_failed")
    updater.bus.update_configuration(["reportPeriodS"], 1800)  # another key changes: v2 is not tried again
    wait_for(lambda: updater.component.counters.get("config_applied") == 1)
    updater.bus.update_configuration(["model"], {"path": str(v3.path)})
    updater.wait_status("active", v3.ref)
    assert [a for a in actions(fake) if a[0] == "stage"] == [("stage", "2"), ("stage", "3")]
    wait_for(lambda: updater.bus.states[-1] == "RUNNING")


def test_no_answer_to_activate_switches_back(harness: Callable[..., UpdaterHarness], fake: FakeInference,
                                             v1: Published, publish: Callable[..., Published],
                                             store_dir: Path) -> None:
    v2 = publish("2")
    fake.silent.add("activate:2")
    updater = harness(model={"source": "local", "path": str(v2.path)}, switchTimeoutS=0.3)
    failed = assert_v1_still_serves(updater, fake, v1, store_dir, "switch_timeout")
    assert "serves again" in failed.detail or "keeps serving" in failed.detail
    assert actions(fake)[-2:] == [("activate", "1"), ("discard", "2")]


def test_an_updater_restarted_mid_switch_comes_back_with_the_old_model(
        harness: Callable[..., UpdaterHarness], fake: FakeInference, v1: Published,
        publish: Callable[..., Published], store_dir: Path) -> None:
    v2 = publish("2")
    fake.silent.add("activate:2")
    first = harness(model={"source": "local", "path": str(v2.path)}, switchTimeoutS=600)
    first.wait_status("switching")
    first.stop()  # dies while waiting for v2's first chunk: nothing is undone, nothing recorded
    assert ModelStore(store_dir).record().active == v1.ref
    assert first.component.counters.get("rollouts.failed.switch_timeout") == 0

    fake.silent.clear()
    fake.commands.clear()
    again = harness(model={"source": "local", "path": str(v2.path)})
    assert again.wait_status("active").model == v1.ref  # the first status: the record's model
    again.wait_status("active", v2.ref)
    assert actions(fake)[:3] == [("activate", "1"), ("stage", "2"), ("activate", "2")]


def test_not_enough_memory_for_two_switches_under_hold(harness: Callable[..., UpdaterHarness], fake: FakeInference,
                                                       v1: Published, publish: Callable[..., Published]) -> None:
    v2 = publish("2")
    fake.capacity_mb = 100 + v2.manifest.memory_mb - 1  # v2 fits alone, not beside v1 (100 MB)
    updater = harness(model={"source": "local", "path": str(v2.path)})
    updater.wait_status("active", v2.ref)
    held = [s for s in updater.statuses if s.state == "switching"]
    assert held and all(s.hold and s.next_model == v2.ref and s.model == v1.ref for s in held)
    assert updater.states() == ["active", "staging", "switching", "active"]
    stages = [c for c in fake.commands if c.action == "stage"]
    assert [s.allow_unload for s in stages] == [False, True]
    assert fake.loaded() == [v2.ref]


def test_a_store_that_cannot_record_the_switch_switches_back(harness: Callable[..., UpdaterHarness],
                                                             fake: FakeInference, v1: Published,
                                                             publish: Callable[..., Published], store_dir: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from vla_edge.errors import ModelUpdateError

    v2 = publish("2")

    def disk_full(self: ModelStore, ref: messages.ModelRef, reason: str = "") -> None:
        raise ModelUpdateError("cannot write active.json: [Errno 28] No space left on device")

    monkeypatch.setattr(ModelStore, "activate", disk_full)
    updater = harness(model={"source": "local", "path": str(v2.path)})
    failed = assert_v1_still_serves(updater, fake, v1, store_dir, "update_failed")
    assert "No space left" in failed.detail
    assert fake.loaded() == [v1.ref]


@pytest.fixture
def quick_retry(monkeypatch: pytest.MonkeyPatch) -> None:
    from vla_edge.components.model_updater import orchestrator, rollout

    monkeypatch.setattr(orchestrator, "RETRY_S", 0.05)
    monkeypatch.setattr(rollout, "PROBE_EVERY_S", 0.05)


def test_a_rollout_waits_for_an_inference_component_still_starting(
        quick_retry: None, harness: Callable[..., UpdaterHarness], fake: FakeInference, v1: Published,
        publish: Callable[..., Published], store_dir: Path) -> None:
    v2 = publish("2")
    fake.silent.update({"stage", "activate", "discard"})  # loading, not subscribed yet: commands go nowhere
    updater = harness(model={"source": "local", "path": str(v2.path)}, switchTimeoutS=0.2)
    waiting = updater.wait_status("staging")
    wait_for(lambda: any("waiting for the inference component" in s.detail for s in updater.statuses))
    assert waiting.model == v1.ref
    assert ("stage", "2") not in actions(fake), "nothing is staged before the inference component reports"
    fake.silent.clear()
    fake.announce()  # it started (serving v1) and listens now
    updater.wait_status("active", v2.ref)
    assert fake.serving is not None and fake.serving.ref == v2.ref
    assert ModelStore(store_dir).record().active == v2.ref
    assert updater.component.counters.get("rollouts.succeeded") == 1
    assert not any(s.state == "failed" for s in updater.statuses)


def test_an_inference_restart_mid_stage_is_retried(quick_retry: None, harness: Callable[..., UpdaterHarness],
                                                    fake: FakeInference, v1: Published,
                                                    publish: Callable[..., Published], store_dir: Path) -> None:
    v2 = publish("2")
    fake.silent.add("stage")  # the first stage is lost: the component restarts meanwhile
    updater = harness(model={"source": "local", "path": str(v2.path)})
    wait_for(lambda: ("stage", "2") in actions(fake))
    fake.silent.clear()
    assert fake.serving is not None
    fake.restart(fake.serving)
    updater.wait_status("active", v2.ref)
    assert updater.component.counters.get("rollouts.retried.inference_restarted") == 1
    assert updater.component.counters.get("rollouts.failed.inference_restarted") == 0
    assert [a for a in actions(fake) if a[0] == "stage"] == [("stage", "2"), ("stage", "2")]
    assert v2.ref not in updater.component.orchestrator._bad  # type: ignore[attr-defined]
    assert ModelStore(store_dir).record().active == v2.ref and fake.loaded()[0] == v2.ref
    wait_for(lambda: updater.bus.states[-1] == "RUNNING")


def test_the_inference_announcing_the_desired_model_is_recorded(
        quick_retry: None, broker: InMemoryBroker, harness: Callable[..., UpdaterHarness],
        publish: Callable[..., Published], store_dir: Path) -> None:
    v1 = publish("1")
    fake = FakeInference(broker, Loaded(v1.ref, str(v1.path), 100.0))
    fake.silent.add("stage")  # still loading v1 from its own path: the stage is lost
    updater = harness(model={"source": "local", "path": str(v1.path)})  # nothing in the store yet
    wait_for(lambda: ("stage", "1") in actions(fake))
    fake.silent.clear()
    fake.announce()  # it loaded v1 itself, from the same path
    wait_for(lambda: ModelStore(store_dir).record().active == v1.ref)
    wait_for(lambda: updater.latest() is not None and updater.latest().state == "active"  # type: ignore[union-attr]
             and "adopted" not in updater.latest().detail)  # type: ignore[union-attr]
    assert not any(s.state == "failed" for s in updater.statuses)
    assert ModelStore(store_dir).get(v1.ref) is not None


def test_a_real_failure_is_not_retried(quick_retry: None, harness: Callable[..., UpdaterHarness],
                                       fake: FakeInference, v1: Published, publish: Callable[..., Published],
                                       store_dir: Path) -> None:
    import time

    v2 = publish("2")
    fake.failures["2"] = ("stage", "load_failed")
    updater = harness(model={"source": "local", "path": str(v2.path)})
    assert_v1_still_serves(updater, fake, v1, store_dir, "load_failed")
    time.sleep(0.5)  # ten backoffs' worth
    assert [a for a in actions(fake) if a[0] == "stage"] == [("stage", "2")]
    assert updater.component.counters.get("rollouts.retried.load_failed") == 0
