"""The inference component with real ACT and Diffusion policies: chunks, history, warm-up, tasks, policy choice."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from support import wait_for
from support.inference import Harness, Rings, joints, rings_fixture  # noqa: F401 - the ``rings`` fixture
from support.policy import (
    ACT_CAMERAS,
    ACT_STEPS,
    DIFFUSION_STEPS,
    simulate_missing_module,
    vla_policy_dir,
)

from vla_edge import messages
from vla_edge.bus.memory import InMemoryBroker
from vla_edge.components.base import load_config
from vla_edge.components.inference.component import POLICY_PATH_ENV, InferenceComponent
from vla_edge.components.inference.config import InferenceConfig
from vla_edge.errors import PolicyError
from vla_edge.policies import LoadedPolicy

FIVE = ["a", "b", "c", "d", "e"]
SMALL = (48, 64)


@pytest.fixture
def act(broker: InMemoryBroker, act_policy: LoadedPolicy, rings: Rings) -> Any:
    def make(**config: Any) -> Harness:
        return Harness(broker, act_policy, rings.directory, cameras=list(ACT_CAMERAS), jointNames=FIVE, **config)

    return make


@pytest.fixture
def diffusion(broker: InMemoryBroker, diffusion_policy: LoadedPolicy, rings: Rings) -> Any:
    def make(**config: Any) -> Harness:
        return Harness(broker, diffusion_policy, rings.directory, **config)

    return make


def _on_grid(chunk: messages.ActionChunk) -> bool:
    slots = chunk.t_start / chunk.dt
    return abs(slots - round(slots)) < 1e-6


@pytest.mark.parametrize("kind", ["act", "diffusion"])
def test_each_policy_type_publishes_timed_chunks(kind: str, act: Any, diffusion: Any, rings: Rings) -> None:
    cameras, names, steps = (ACT_CAMERAS, FIVE, ACT_STEPS) if kind == "act" else (("front",), None, DIFFUSION_STEPS)
    h = (act if kind == "act" else diffusion)(actionDt=0.05)
    captured = [rings.frame(camera=camera, shape=SMALL, age_s=0.1 * i) for i, camera in enumerate(cameras)]
    before = time.time()
    h.send(*captured, joints(names))
    chunk = h.component.step()
    assert chunk is not None and h.chunks == [chunk]
    width = len(names or h.config.joint_names)
    assert np.array(chunk.actions).shape == (steps, width) and np.isfinite(np.array(chunk.actions)).all()
    assert chunk.dt == 0.05 and _on_grid(chunk) and before <= chunk.t_start <= chunk.t_created + chunk.dt
    assert chunk.t_observation == max(f.t_capture for f in captured)  # the newest frame's capture time


def test_diffusion_gets_the_observation_one_action_dt_earlier(
    diffusion: Any, diffusion_policy: LoadedPolicy, rings: Rings, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[dict[str, Any], list[dict[str, Any]]]] = []
    original = diffusion_policy.predict_chunk

    def spy(observation: dict[str, Any], history: Any = ()) -> np.ndarray:
        calls.append((observation, list(history)))
        return original(observation, history=history)

    monkeypatch.setattr(diffusion_policy, "predict_chunk", spy)
    h = diffusion(actionDt=0.1)
    now = time.time() - 0.05
    for age, value in ((0.2, 10), (0.1, 20), (0.0, 30)):  # frames 0.1 s apart: a plain grey level each
        ready = rings.frame(shape=SMALL, t_capture=now - age, image=np.full((*SMALL, 3), value, np.uint8))
    h.send(ready, joints(positions=[1.0] * 6, t=now - 0.1), joints(positions=[2.0] * 6, t=now))
    assert h.component.step() is not None
    ((current, history),) = calls
    assert len(history) == 1
    assert float(current["observation.state"][0]) == 2.0
    assert float(history[0]["observation.state"][0]) == 1.0  # the joint state measured actionDt earlier
    assert float(current["observation.images.front"].mean()) == pytest.approx(30 / 255)
    assert float(history[0]["observation.images.front"].mean()) == pytest.approx(20 / 255)  # the frame actionDt earlier


def test_warm_up_runs_before_running_is_reported(
    act: Any, act_policy: LoadedPolicy, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    events: list[str] = []
    original = act_policy.predict_chunk

    def spy(observation: dict[str, Any]) -> np.ndarray:
        events.append(f"predict {float(observation['observation.state'].abs().sum()):.0f}")
        return original(observation)

    monkeypatch.setattr(act_policy, "predict_chunk", spy)
    h = act(warmupInferences=2)
    report = h.bus.update_state

    def record(state: Any) -> None:
        events.append(f"state {state}")
        report(state)

    monkeypatch.setattr(h.bus, "update_state", record)
    with caplog.at_level(logging.INFO, logger="vla_edge.inference"), h.running():
        wait_for(lambda: "state RUNNING" in events)
    assert events[:3] == ["predict 0", "predict 0", "state RUNNING"]  # synthetic observations: joints at zero
    assert any("warm-up: 2 inference(s)" in r.getMessage() for r in caplog.records)
    metrics = h.component.metrics()
    assert metrics["warmup_first_ms"] > 0 and metrics["warmup_last_ms"] > 0


def test_failing_warm_up_stops_the_start(act: Any, act_policy: LoadedPolicy, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(observation: dict[str, Any]) -> np.ndarray:
        raise PolicyError("act inference failed: simulated")

    monkeypatch.setattr(act_policy, "predict_chunk", broken)
    h = act()
    with pytest.raises(PolicyError, match="simulated"):
        h.component.run(threading.Event())
    assert h.bus.states == []  # never RUNNING


def test_task_is_the_one_current_when_the_frame_was_captured(
    act: Any, act_policy: LoadedPolicy, rings: Rings, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    tasks: list[str] = []
    original = act_policy.predict_chunk

    def spy(observation: dict[str, Any]) -> np.ndarray:
        tasks.append(observation["task"])
        return original(observation)

    monkeypatch.setattr(act_policy, "predict_chunk", spy)
    h = act(task="wave", refillFraction=1.0, actionDt=0.01)  # every step is due
    earlier = time.time() - 0.3
    h.send(messages.TaskInstruction(text="pick up the red cube"))
    # frames captured before the instruction arrived: this inference still uses the old task
    h.send(*(rings.frame(camera=c, shape=SMALL, t_capture=earlier) for c in ACT_CAMERAS), joints(FIVE))
    with caplog.at_level(logging.INFO, logger="vla_edge.inference"):
        assert h.component.step() is not None
        h.send(*(rings.frame(camera=c, shape=SMALL, seq=2) for c in ACT_CAMERAS), joints(FIVE))
        wait_for(lambda: h.component.step() is not None)
    assert tasks == ["wave", "pick up the red cube"]
    assert h.component.task == "pick up the red cube"
    assert any("inference now uses task 'pick up the red cube' (was 'wave')" in r.getMessage() for r in caplog.records)


def test_language_policy_with_an_empty_task_warns(
    act: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(LoadedPolicy, "needs_language", property(lambda self: True))
    with caplog.at_level(logging.WARNING, logger="vla_edge.inference"):
        h = act(task="")
        assert sum("language-conditioned" in r.getMessage() for r in caplog.records) == 1
        h.send(messages.TaskInstruction(text="fold the towel"))
        h.send(messages.TaskInstruction(text=""))
    assert sum("language-conditioned" in r.getMessage() for r in caplog.records) == 2
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="vla_edge.inference"):
        act(task="fold the towel")
    assert not any("language-conditioned" in r.getMessage() for r in caplog.records)


def test_health_reports_chunk_rate_and_queue_depth(act: Any, rings: Rings) -> None:
    h = act(refillFraction=1.0, actionDt=0.05)
    for seq in (1, 2):
        h.send(*(rings.frame(camera=c, shape=SMALL, seq=seq) for c in ACT_CAMERAS), joints(FIVE))
        wait_for(lambda: h.component.step() is not None)
    h.component.publish_health(force=True)
    metrics = h.health[-1].metrics
    assert metrics["chunks_published"] == 2.0 and metrics["chunks_per_s"] > 0
    # how much of the first chunk was still ahead when the second was published (exact figures: metrics tests)
    assert 0.0 <= metrics["queue_depth_s"] <= ACT_STEPS * 0.05
    assert 0 <= metrics["queue_depth_actions"] <= ACT_STEPS
    assert metrics["queue_depth_min_s"] == metrics["queue_depth_s"]
    assert h.component.counters.get("queue_starved") == (1 if metrics["queue_depth_actions"] == 0 else 0)


# --- which policy, and policies that cannot run here --------------------------------------------


def test_empty_policy_path_uses_the_environment_variable(
    broker: InMemoryBroker, diffusion_dir: Path, rings: Rings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(POLICY_PATH_ENV, str(diffusion_dir))
    config = load_config(InferenceConfig, {"policyPath": "", "frameDir": str(rings.directory)})
    component = InferenceComponent(broker.bus(), config)
    assert component.policy.path == diffusion_dir.resolve() and component.policy.policy_type == "diffusion"
    assert not component.untrained


def test_policy_path_wins_over_the_environment_variable(
    broker: InMemoryBroker, demo_dir: Path, diffusion_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(POLICY_PATH_ENV, str(demo_dir))
    config = load_config(InferenceConfig, {"policyPath": str(diffusion_dir)})
    assert InferenceComponent(broker.bus(), config).policy.path == diffusion_dir.resolve()


@pytest.mark.parametrize("policy_type", ["smolvla", "pi0"])
def test_policy_whose_extra_is_missing_never_starts(
    broker: InMemoryBroker, demo_dir: Path, tmp_path: Path, policy_type: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = vla_policy_dir(tmp_path / policy_type, demo_dir, policy_type, (3, 120, 160))
    simulate_missing_module(monkeypatch, "transformers")
    bus = broker.bus()
    config = load_config(InferenceConfig, {"policyPath": str(path), "frameDir": str(tmp_path / "frames")})
    with pytest.raises(PolicyError, match=rf"'{policy_type}' policy, which needs transformers.*pip install"):
        InferenceComponent(bus, config)
    assert broker.published == [] and bus.states == []
    assert broker._subscribers == []  # nothing subscribed: the component never got as far as its inputs


def test_dtype_and_compile_settings_reach_the_loader_and_fall_back_on_cpu(
    broker: InMemoryBroker, act_dir: Path, rings: Rings, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    import torch

    from vla_edge.policies import speed

    class Broken(torch.nn.Module):
        def forward(self, *args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("simulated compiler failure")

    monkeypatch.setattr(speed, "_torch_compile", lambda target: Broken())
    config = load_config(InferenceConfig, {
        "policyPath": str(act_dir), "frameDir": str(rings.directory), "cameras": list(ACT_CAMERAS),
        "jointNames": FIVE, "dtype": "float16", "compile": True, "warmupInferences": 1,
    })
    with caplog.at_level(logging.WARNING):
        component = InferenceComponent(broker.bus(), config)
        assert component.policy.dtype == "float32"  # float16 on CPU: falls back, with a warning
        assert component.policy.compiled
        component.warm_up()
    assert not component.policy.compiled  # the failed compilation fell back to eager during warm-up
    messages_ = [r.getMessage() for r in caplog.records]
    assert any("float16 is not supported on CPU" in m for m in messages_)
    assert any("compiled inference failed" in m for m in messages_)
