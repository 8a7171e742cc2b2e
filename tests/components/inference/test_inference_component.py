"""The inference component on the in-memory bus, with the real (untrained) demo ACT policy."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from support import wait_for
from support.inference import JOINTS, Harness, Rings, joints

from vla_edge import messages
from vla_edge.bus.memory import InMemoryBroker
from vla_edge.cameras.ring import FrameRing
from vla_edge.components.base import load_config
from vla_edge.components.inference.component import InferenceComponent
from vla_edge.components.inference.config import InferenceConfig
from vla_edge.errors import ConfigurationError, PolicyError
from vla_edge.models import read_model_ref
from vla_edge.policies import LoadedPolicy

_rings: list[Rings] = []


@pytest.fixture(autouse=True)
def frame_dir(tmp_path: Path) -> Iterator[Path]:
    """Every test gets its own shared-memory ring directory; rings are closed afterwards."""
    _rings[:] = [Rings(tmp_path / "frames")]
    yield _rings[0].directory
    _rings[0].close()


def frame(**kwargs: Any) -> messages.FrameReady:
    """Write a random image into a camera's ring, as the camera component does, and announce it."""
    return _rings[0].frame(**kwargs)


@pytest.fixture
def harness(broker: InMemoryBroker, demo_policy: LoadedPolicy, frame_dir: Path):
    def make(**config: Any) -> Harness:
        return Harness(broker, demo_policy, frame_dir, **config)

    return make


def test_frame_and_joint_state_produce_an_action_chunk(harness: Any, demo_dir: Path) -> None:
    h = harness()
    with h.running():
        sent = frame()
        h.send(sent, joints())
        wait_for(lambda: h.chunks)
    chunk = h.chunks[0]
    assert chunk.names == JOINTS
    assert len(chunk.actions) == 30 and all(len(a) == 6 for a in chunk.actions)
    assert np.isfinite(np.array(chunk.actions)).all()
    assert chunk.model == read_model_ref(demo_dir)
    assert chunk.t_observation == sent.t_capture
    assert chunk.dt == pytest.approx(1 / 30)
    slots = chunk.t_start / chunk.dt
    assert abs(slots - round(slots)) < 1e-6  # on the action grid
    assert chunk.t_start >= sent.t_capture - chunk.dt and chunk.t_created >= sent.t_capture
    assert h.component.state == "RUNNING" and h.bus.states[-1] == "RUNNING"


def test_frames_of_another_size_are_resized_for_the_policy(harness: Any) -> None:
    h = harness()
    h.send(frame(shape=(480, 640)), joints())
    chunk = h.component.step()
    assert chunk is not None and len(chunk.actions) == 30


def test_joint_state_is_reordered_to_the_configured_joints(
    harness: Any, demo_policy: LoadedPolicy, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[list[float]] = []
    original = demo_policy.build_observation

    def spy(images: Any, state: Any, task: str = "") -> Any:
        seen.append(list(state))
        return original(images, state, task)

    monkeypatch.setattr(demo_policy, "build_observation", spy)
    h = harness()
    reversed_names = list(reversed(JOINTS))
    h.send(frame(), messages.JointState(t=time.time(), names=reversed_names, positions=[5.0, 4.0, 3.0, 2.0, 1.0, 0.0]))
    assert h.component.step() is not None
    assert seen == [[0.0, 1.0, 2.0, 3.0, 4.0, 5.0]]


def test_instruction_message_changes_the_task(
    harness: Any, demo_policy: LoadedPolicy, monkeypatch: pytest.MonkeyPatch
) -> None:
    tasks: list[str] = []
    original = demo_policy.predict_chunk

    def spy(observation: dict[str, Any]) -> np.ndarray:
        tasks.append(observation["task"])
        return original(observation)

    monkeypatch.setattr(demo_policy, "predict_chunk", spy)
    h = harness(task="wave")
    assert h.component.task == "wave"
    h.send(messages.TaskInstruction(text="pick up the red cube"))
    assert h.component.task == "pick up the red cube"
    h.send(frame(), joints())
    assert h.component.step() is not None
    assert tasks == ["pick up the red cube"]


@pytest.mark.parametrize(
    "inputs",
    [
        pytest.param(list, id="nothing"),
        pytest.param(lambda: [frame()], id="no-joint-state"),
        pytest.param(lambda: [joints()], id="no-frame"),
        pytest.param(lambda: [frame(camera="side"), joints()], id="other-camera-only"),
        pytest.param(lambda: [frame(age_s=5.0), joints()], id="stale-frame"),
        pytest.param(lambda: [frame(), joints(age_s=5.0)], id="stale-joint-state"),
        pytest.param(lambda: [frame(), joints(names=JOINTS[:5])], id="joint-state-lacks-a-joint"),
    ],
)
def test_missing_or_stale_inputs_publish_nothing(harness: Any, inputs: Any) -> None:
    h = harness()
    h.send(*inputs())
    for _ in range(3):
        assert h.component.step() is None
    assert h.chunks == []
    h.send(frame(), joints())  # fresh, complete inputs: the same component now publishes
    assert h.component.step() is not None and len(h.chunks) == 1


def test_next_chunk_waits_for_the_refill_point(harness: Any) -> None:
    # 30 actions 0.5 s apart: the refill point is 7.5 s away, far beyond any inference time here
    h = harness(refillFraction=0.5, actionDt=0.5)
    h.send(frame(), joints())
    first = h.component.step()
    assert first is not None
    assert h.component.step() is None  # the first chunk still has more than half its span left
    span = len(first.actions) * first.dt
    assert h.component._next_attempt == pytest.approx(first.t_start + span / 2)


def test_predict_exception_errors_holds_and_recovers(
    harness: Any, demo_policy: LoadedPolicy, monkeypatch: pytest.MonkeyPatch
) -> None:
    failing = threading.Event()
    failing.set()
    original = demo_policy.predict_chunk

    def flaky(observation: dict[str, Any]) -> np.ndarray:
        if failing.is_set():
            raise RuntimeError("simulated accelerator fault")
        return original(observation)

    monkeypatch.setattr(demo_policy, "predict_chunk", flaky)
    h = harness(maxObservationAgeS=60.0, warmupInferences=0)  # a failing warm-up would stop the start
    with h.running():
        h.send(frame(), joints())
        wait_for(lambda: h.component.state == "ERRORED" and h.component.counters.get("inference_errors") >= 2)
        assert "simulated accelerator fault" in h.component.detail
        assert "ERRORED" in h.bus.states
        assert h.chunks == []
        failing.clear()
        wait_for(lambda: h.chunks and h.component.state == "RUNNING")
    assert h.bus.states[-1] == "RUNNING"
    assert h.component.counters.get("published.action_chunk") >= 1


def test_malformed_messages_are_counted_and_it_keeps_running(harness: Any) -> None:
    h = harness()
    with h.running():
        h.feeder.publish("vla-edge/camera/front/frame", b"not a frame")
        h.feeder.publish(
            messages.TOPIC_JOINT_STATE,
            {"kind": "joint_state", "schema": 1, "t": 1.0, "names": ["a"], "positions": [1.0, 2.0]},
        )
        h.feeder.publish(messages.TOPIC_INSTRUCTION, b"\xff\xfe")
        wait_for(lambda: h.component.counters.get("rejected.malformed") == 2)
        assert h.component.counters.get("rejected.invalid") == 1
        assert h.chunks == []
        h.send(frame(), joints())
        wait_for(lambda: h.chunks)
    assert h.component.state == "RUNNING"


def test_health_reports_latency_chunks_and_observation_age(harness: Any) -> None:
    h = harness()
    h.send(frame(age_s=0.2), joints())
    assert h.component.step() is not None
    h.component.publish_health(force=True)
    health = h.health[-1]
    assert health.component == "inference" and health.state in ("STARTING", "RUNNING")
    metrics = health.metrics
    assert metrics["chunks_published"] == 1.0
    assert metrics["inference_latency_p50_ms"] is not None and metrics["inference_latency_p50_ms"] > 0
    assert metrics["inference_latency_p99_ms"] >= metrics["inference_latency_p50_ms"]
    assert metrics["observation_age_ms"] >= 200.0
    assert metrics["untrained_policy"] == 1.0
    assert health.counters["published.action_chunk"] == 1


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"cameras": ["side"]}, r"cameras \['side'\] are not inputs"),
        ({"cameras": ["front", "wrist"]}, r"cameras \['wrist'\] are not inputs"),
        ({"jointNames": JOINTS[:5]}, "6 values but 5 joints"),
    ],
)
def test_configuration_that_does_not_fit_the_policy_is_refused(
    broker: InMemoryBroker, demo_policy: LoadedPolicy, config: dict[str, Any], message: str
) -> None:
    with pytest.raises(PolicyError, match=message):
        InferenceComponent(broker.bus(), load_config(InferenceConfig, config), policy=demo_policy)


def test_empty_policy_path_loads_the_demo_policy_from_the_cache(
    broker: InMemoryBroker, demo_cache: Path, demo_dir: Path
) -> None:
    config = load_config(InferenceConfig, {"policyPath": "", "cacheDir": str(demo_cache)})
    component = InferenceComponent(broker.bus(), config)
    assert component.policy.path == demo_dir.resolve()
    assert component.untrained
    assert component.model_ref == read_model_ref(demo_dir)


def test_missing_policy_path_fails_to_start_with_a_clear_error(broker: InMemoryBroker, tmp_path: Path) -> None:
    config = load_config(InferenceConfig, {"policyPath": str(tmp_path / "missing")})
    with pytest.raises(PolicyError, match="does not exist"):
        InferenceComponent(broker.bus(), config)


@pytest.mark.parametrize(
    "raw",
    [
        {"device": "gpu"},
        {"refillFraction": 0},
        {"actionDt": -1},
        {"cameras": ["front", "front"]},
        {"cameras": ["front/left"]},
        {"cameras": []},
        {"policy_pth": "/x"},
        {"dtype": "float64"},
        {"dtype": "half"},
        {"compile": "maybe"},
        {"warmupInferences": -1},
    ],
)
def test_bad_configuration_is_rejected(raw: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        load_config(InferenceConfig, raw)


def test_defaults_match_the_documented_ones() -> None:
    config = load_config(InferenceConfig, {})
    assert config.model_dump(by_alias=True) == {
        "policyPath": "",
        "cacheDir": "",
        "frameDir": "/dev/shm/vla-edge",
        "device": "auto",
        "cameras": ["front"],
        "jointNames": JOINTS,
        "task": "",
        "refillFraction": 0.5,
        "actionDt": pytest.approx(1 / 30),
        "maxObservationAgeS": 1.0,
        "torchThreads": 1,
        "dtype": "float32",
        "compile": False,
        "warmupInferences": 1,
    }


def test_frame_ring_outside_the_frame_directory_is_refused(harness: Any, tmp_path: Path) -> None:
    h = harness()
    outside = FrameRing.create(tmp_path / "elsewhere", "front", 120, 160)
    try:
        written = outside.write(np.zeros((120, 160, 3), np.uint8), time.time())
        h.send(
            messages.FrameReady(camera="front", seq=written.seq, t_capture=time.time(), height=120, width=160,
                                slot=written.slot, segment=str(outside.path)),
            joints(),
        )
        assert h.component.step() is None
        assert h.component.counters.get("rejected.invalid") == 1
    finally:
        outside.close()
