"""Switching models in the inference component: stage, activate, discard over the in-memory bus.

Two versions of one small ACT model (``arm-act`` 1 and 2, different weights and action means)
are the two models. The loop's passes run on the test thread (``drive_until``) while a stage
runs on the component's worker, so the tests see what the loop published and in which order.
Where a test is about the validator's verdict, the real validator process runs; where it is
about what happens around it, a stand-in validator answers at once.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from support import wait_for
from support.inference import Harness, Rings, command, joints, rings_fixture  # noqa: F401 - the ``rings`` fixture
from support.policy import ACT_ACTION_MEAN, ACT_CAMERAS, ACT_V2_ACTION_MEAN, crash_validators_while_loading

from vla_edge import messages
from vla_edge.bus.memory import InMemoryBroker
from vla_edge.errors import PolicyError
from vla_edge.models import read_model_ref
from vla_edge.policies import LoadedPolicy, load_policy
from vla_edge.policies.validate import ValidationReport

FIVE = ["a", "b", "c", "d", "e"]
SMALL = (48, 64)
WIDE_LIMITS = {name: (-100.0, 100.0) for name in FIVE}


@pytest.fixture
def serving_v1(broker: InMemoryBroker, act_v1_policy: LoadedPolicy, rings: Rings) -> Iterator[Any]:
    """A component serving arm-act 1 with fresh inputs; a chunk spans 2 s and is refilled 1 s after it starts."""
    made: list[Harness] = []

    def make(switching: dict[str, Any] | None = None, **config: Any) -> Harness:
        settings = {"cameras": list(ACT_CAMERAS), "jointNames": FIVE, "maxObservationAgeS": 30.0,
                    "actionDt": 0.25, "refillFraction": 0.5, **config}
        h = Harness(broker, act_v1_policy, rings.directory, switching=switching, **settings)
        made.append(h)
        h.feed = lambda: h.send(*(rings.frame(camera=camera, shape=SMALL) for camera in ACT_CAMERAS), joints(FIVE))
        h.feed()
        h.drive_until(lambda: h.chunks)
        return h

    yield make
    for h in made:
        h.component.close()


def states_of(h: Harness, request_id: str) -> list[str]:
    return [r.state for r in h.reports if r.request_id == request_id]


def chunks_between(h: Harness, first: messages.ModelReport, last: messages.ModelReport) -> list[messages.ActionChunk]:
    start, end = h.events.index(first), h.events.index(last)
    return [e for e in h.events[start:end] if isinstance(e, messages.ActionChunk)]


def same_actions(chunk: messages.ActionChunk, mean: list[float]) -> bool:
    return bool(np.allclose(np.array(chunk.actions), np.array([mean] * len(chunk.actions)), atol=1e-3))


def instant_validator(*args: Any, **kwargs: Any) -> ValidationReport:
    """Stand-in for the validator process where its verdict is not what the test is about."""
    return ValidationReport(ok=True, smoke_ms_p50=1.0, load_ms=1.0)


def test_stage_beside_activate_at_the_next_pass_roll_back_and_discard(
    serving_v1: Any, act_v2_dir: Path, v1_ref: messages.ModelRef, v2_ref: messages.ModelRef
) -> None:
    h = serving_v1()
    stage = command("stage", v2_ref, act_v2_dir, joint_limits=WIDE_LIMITS, latency_budget_ms=60_000.0)
    h.send(stage)
    second = command("stage", v2_ref, act_v2_dir)
    h.send(second)  # never two loads at once
    assert h.report("failed", second.request_id).reason == "busy"
    h.drive_until(lambda: h.report("staged", stage.request_id) or h.report("failed", stage.request_id))
    staged = h.report("staged", stage.request_id)
    assert staged is not None, h.reports
    assert states_of(h, stage.request_id) == ["validating", "loading", "staged"]
    assert staged.beside and staged.load_ms > 0 and staged.smoke_ms_p50 > 0 and staged.memory_mb > 0
    during = chunks_between(h, h.report("validating", stage.request_id), staged)
    assert len(during) >= 2 and all(c.model == v1_ref for c in during)  # v1 kept serving while v2 was staged
    assert h.component.metrics()["models_loaded"] == 2.0

    last_v1 = h.chunks[-1]
    activate = command("activate", v2_ref)
    h.send(activate)
    first = h.component.step()  # v1's refill point is up to 1 s away: the switch does not wait for it
    assert first is not None and first.model == v2_ref and h.chunks[-2:] == [last_v1, first]
    assert last_v1.t_start <= first.t_start <= last_v1.t_start + len(last_v1.actions) * last_v1.dt  # no gap
    assert same_actions(last_v1, ACT_ACTION_MEAN) and same_actions(first, ACT_V2_ACTION_MEAN)
    serving = h.report("serving", activate.request_id)
    assert serving.first_chunk_id == first.chunk_id and serving.beside
    metrics = h.component.metrics()
    assert metrics["switch_validation_ms"] > 0 and metrics["switch_load_ms"] > 0
    assert metrics["switch_first_chunk_ms"] >= 0 and metrics["models_loaded"] == 2.0
    h.component.publish_health(force=True)
    assert h.health[-1].detail == "serving arm-act 2"

    back = command("activate", v1_ref)  # rollback: v1 is still loaded, nothing is staged
    h.send(back)
    rolled = h.component.step()
    assert rolled.model == v1_ref and h.report("serving", back.request_id).first_chunk_id == rolled.chunk_id
    forward = command("activate", v2_ref)
    h.send(forward)
    assert h.component.step().model == v2_ref

    discard = command("discard", v1_ref)
    h.send(discard)
    assert h.report("unloaded", discard.request_id) is not None
    assert h.component.metrics()["models_loaded"] == 1.0
    # commands for a model already in that state are answered with that state
    for action, ref, state, detail in [("discard", v1_ref, "unloaded", "was not loaded"),
                                       ("activate", v2_ref, "serving", "already serving"),
                                       ("stage", v2_ref, "serving", "already serving")]:
        again = command(action, ref, act_v2_dir)
        h.send(again)
        assert h.report(state, again.request_id).detail == detail
    refused = command("discard", v2_ref)
    h.send(refused)
    assert h.report("failed", refused.request_id).reason == "serving"


def _truncated(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    weights = target / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    return target


@pytest.mark.parametrize(
    ("case", "reason", "says"),
    [
        ("truncated-weights", "load_failed", "model.safetensors"),
        ("other-cameras", "feature_mismatch", "cameras ['top', 'wrist'] are not inputs"),
        ("tiny-latency-budget", "too_slow", "exceeds the latency budget"),
        ("narrow-joint-limits", "out_of_limits", "outside the joint limits"),
        ("validator-killed", "validator_crashed", "killed by SIGKILL"),
        ("validator-timeout", "timeout", "did not finish within 0.5 s"),
    ],
)
def test_a_model_failing_validation_is_refused_while_the_serving_model_keeps_publishing(
    serving_v1: Any, act_v2_dir: Path, diffusion_dir: Path, v1_ref: messages.ModelRef, v2_ref: messages.ModelRef,
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str, reason: str, says: str,
) -> None:
    path, fields, switching = act_v2_dir, {}, {}
    if case == "truncated-weights":
        path = _truncated(act_v2_dir, tmp_path / "truncated")
    elif case == "other-cameras":
        path = diffusion_dir  # camera front and six joints; this device has top, wrist and five
    elif case == "tiny-latency-budget":
        fields = {"latency_budget_ms": 0.001}
    elif case == "narrow-joint-limits":
        fields = {"joint_limits": {**WIDE_LIMITS, "a": (-1.0, 1.0)}}  # joint a's actions are all 10.0
    elif case == "validator-killed":
        crash_validators_while_loading(tmp_path, monkeypatch)
    else:
        switching = {"validation_timeout_s": 0.5}
    h = serving_v1(switching)
    stage = command("stage", v2_ref if path == act_v2_dir else read_model_ref(path), path, **fields)
    h.send(stage)
    h.drive_until(lambda: h.report("failed", stage.request_id) or h.report("staged", stage.request_id))
    failed = h.report("failed", stage.request_id)
    assert failed is not None and failed.reason == reason, h.reports
    assert says in failed.detail
    assert states_of(h, stage.request_id) == ["validating", "failed"]
    published = len(h.chunks)
    h.drive_until(lambda: len(h.chunks) > published)  # the serving model was never touched
    assert all(chunk.model == v1_ref for chunk in h.chunks)
    assert h.component.model_ref == v1_ref and h.component.metrics()["models_loaded"] == 1.0
    assert h.component.state in ("STARTING", "RUNNING")


def test_too_little_memory_for_two_models_is_refused_without_allow_unload(
    serving_v1: Any, act_v2_dir: Path, v1_ref: messages.ModelRef, v2_ref: messages.ModelRef
) -> None:
    h = serving_v1({"free_memory_mb": lambda: 100.0})  # the boundary: what the device says is free
    stage = command("stage", v2_ref, act_v2_dir, memory_mb=500.0)
    h.send(stage)
    h.drive_until(lambda: h.report("failed", stage.request_id))
    failed = h.report("failed", stage.request_id)
    assert failed.reason == "insufficient_memory"
    assert "needs about 500 MB" in failed.detail and "100 MB is available" in failed.detail
    assert "hold" in failed.detail and "allow_unload" in failed.detail  # what the updater must do instead
    assert states_of(h, stage.request_id) == ["validating", "failed"]  # refused before any validator ran
    published = len(h.chunks)
    h.drive_until(lambda: len(h.chunks) > published)
    assert h.chunks[-1].model == v1_ref and h.component.metrics()["models_loaded"] == 1.0


def test_allow_unload_replaces_the_serving_model_after_validation(
    serving_v1: Any, act_v2_dir: Path, v1_ref: messages.ModelRef, v2_ref: messages.ModelRef
) -> None:
    # 100 MB free: v2's 150 MB do not fit beside v1, but do once v1 (about 115 MB estimated) is unloaded
    h = serving_v1({"free_memory_mb": lambda: 100.0, "memory_margin_mb": 0.0})
    stage = command("stage", v2_ref, act_v2_dir, memory_mb=150.0, allow_unload=True)
    h.send(stage)
    h.drive_until(lambda: h.report("staged", stage.request_id) or h.report("failed", stage.request_id))
    staged = h.report("staged", stage.request_id)
    assert staged is not None and not staged.beside, h.reports
    validating, loading = h.report("validating", stage.request_id), h.report("loading", stage.request_id)
    assert chunks_between(h, validating, loading)  # v1 served while v2 was validated
    assert h.component.serving is None and h.component.metrics()["models_loaded"] == 1.0
    assert h.component.step() is None  # no model serves: the arm holds (the updater asked for it)
    h.component.publish_health(force=True)
    assert h.health[-1].detail == "no model loaded"
    activate = command("activate", v2_ref)
    h.send(activate)
    first = h.component.step()
    assert first.model == v2_ref and same_actions(first, ACT_V2_ACTION_MEAN)
    serving = h.report("serving", activate.request_id)
    assert serving.first_chunk_id == first.chunk_id and not serving.beside
    assert v1_ref not in [m.ref for m in h.component.models.loaded()]


def test_a_failed_load_after_unloading_loads_the_previous_model_again(
    serving_v1: Any, act_v1_policy: LoadedPolicy, act_v2_dir: Path, v1_ref: messages.ModelRef,
    v2_ref: messages.ModelRef,
) -> None:
    def loader(path: Path, *args: Any, **kwargs: Any) -> LoadedPolicy:
        if Path(path) == act_v2_dir.resolve():
            raise PolicyError("simulated: the weights do not fit the accelerator")
        return act_v1_policy  # the previous model, loaded again

    h = serving_v1({"validate": instant_validator, "load": loader, "free_memory_mb": lambda: 100.0,
                    "memory_margin_mb": 0.0})
    stage = command("stage", v2_ref, act_v2_dir, memory_mb=150.0, allow_unload=True)
    h.send(stage)
    h.drive_until(lambda: h.report("failed", stage.request_id))
    failed = h.report("failed", stage.request_id)
    assert failed.reason == "load_failed" and "simulated" in failed.detail
    assert "arm-act 1 was loaded again" in failed.detail
    assert h.component.model_ref == v1_ref
    published = len(h.chunks)
    h.drive_until(lambda: len(h.chunks) > published)
    assert h.chunks[-1].model == v1_ref


def test_activate_of_a_model_that_is_not_loaded_stages_it_first(
    serving_v1: Any, act_v2_dir: Path, v2_ref: messages.ModelRef
) -> None:
    h = serving_v1({"validate": instant_validator})
    activate = command("activate", v2_ref, act_v2_dir)
    h.send(activate)
    h.drive_until(lambda: h.report("serving", activate.request_id) or h.report("failed", activate.request_id))
    assert states_of(h, activate.request_id) == ["validating", "loading", "staged", "serving"]
    first = next(c for c in h.chunks if c.chunk_id == h.report("serving", activate.request_id).first_chunk_id)
    assert first.model == v2_ref


def test_a_new_model_whose_first_inference_fails_hands_back_to_the_previous(
    serving_v1: Any, act_v2_dir: Path, v1_ref: messages.ModelRef, v2_ref: messages.ModelRef
) -> None:
    def loader(path: Path, *args: Any, **kwargs: Any) -> LoadedPolicy:
        policy = load_policy(path, *args, **kwargs)
        real, calls = policy.predict_chunk, []

        def fails_after_warm_up(observation: Any, history: Any = ()) -> Any:
            calls.append(1)
            if len(calls) > 1:
                raise RuntimeError("simulated device fault")
            return real(observation, history=history)

        policy.predict_chunk = fails_after_warm_up  # type: ignore[method-assign]
        return policy

    h = serving_v1({"validate": instant_validator, "load": loader})
    stage = command("stage", v2_ref, act_v2_dir)
    h.send(stage)
    h.drive_until(lambda: h.report("staged", stage.request_id) or h.report("failed", stage.request_id))
    activate = command("activate", v2_ref)
    h.send(activate)
    assert h.component.step() is None
    failed = h.report("failed", activate.request_id)
    assert failed.reason == "inference_failed" and "arm-act 1 serves again" in failed.detail
    assert h.component.model_ref == v1_ref and h.component.metrics()["models_loaded"] == 2.0
    published = len(h.chunks)
    h.drive_until(lambda: len(h.chunks) > published)
    assert all(chunk.model == v1_ref for chunk in h.chunks)


def test_on_start_the_component_reports_the_model_it_serves(serving_v1: Any, v1_ref: messages.ModelRef) -> None:
    h = serving_v1(warmupInferences=0)
    with h.running():
        wait_for(lambda: h.report("serving"))
    report = h.report("serving")
    assert report.model == v1_ref and report.request_id is None and report.path
    assert h.component.detail == "serving arm-act 1"


def test_model_commands_on_the_wire_are_validated(serving_v1: Any) -> None:
    h = serving_v1()
    h.feeder.publish(messages.TOPIC_MODEL_COMMAND, {"kind": "model_command", "schema": 1, "t": 1.0,
                                                   "action": "explode", "model": {}})
    assert h.component.counters.get("rejected.invalid") == 1 and h.reports == []
