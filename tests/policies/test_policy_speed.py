"""dtype and compile settings: accepted, applied where the device supports them, falling back cleanly."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from support.policy import ACT_ACTION_MEAN, ACT_CAMERAS, ACT_STEPS

from vla_edge.errors import PolicyError
from vla_edge.policies import LoadedPolicy, load_policy, resolve_dtype, speed

FIVE = ["a", "b", "c", "d", "e"]


def _observation(policy: LoadedPolicy) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    images = {camera: rng.integers(0, 256, (48, 64, 3), dtype=np.uint8) for camera in ACT_CAMERAS}
    return policy.build_observation(images, [0.0] * 5)


def test_float16_on_cpu_falls_back_to_float32_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="vla_edge.policies.speed"):
        assert resolve_dtype("float16", "cpu") == "float32"
    assert any("float16 is not supported on CPU" in r.getMessage() for r in caplog.records)
    assert resolve_dtype("bfloat16", "cpu") == "bfloat16"
    assert resolve_dtype("float32", "cpu") == "float32"
    with pytest.raises(PolicyError, match="unknown dtype"):
        resolve_dtype("float64", "cpu")


def test_bfloat16_on_cpu_runs_under_autocast(act_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    policy = load_policy(act_dir, "cpu", dtype="bfloat16")
    assert policy.dtype == "bfloat16"
    assert next(policy.policy.parameters()).dtype == torch.float32  # weights stay float32
    inner = policy.policy.predict_action_chunk
    autocast_seen: list[bool] = []

    def spy(batch: dict[str, Any]) -> Any:
        autocast_seen.append(torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16)
        return inner(batch)

    monkeypatch.setattr(policy.policy, "predict_action_chunk", spy)
    actions = policy.predict_chunk(_observation(policy))
    assert autocast_seen == [True]
    assert actions.shape == (ACT_STEPS, 5) and actions.dtype == np.float32
    np.testing.assert_allclose(actions, np.tile(ACT_ACTION_MEAN, (ACT_STEPS, 1)), atol=0.5)  # bfloat16 rounding


def test_reduced_precision_that_fails_falls_back_to_float32(
    act_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import torch

    policy = load_policy(act_dir, "cpu", dtype="bfloat16")
    inner = policy.policy.predict_action_chunk

    def no_bfloat16(batch: dict[str, Any]) -> Any:
        if torch.is_autocast_enabled("cpu"):
            raise RuntimeError("simulated: an operator without a bfloat16 kernel")
        return inner(batch)

    monkeypatch.setattr(policy.policy, "predict_action_chunk", no_bfloat16)
    with caplog.at_level(logging.WARNING, logger="vla_edge.policies.policy"):
        latencies = policy.warm_up(1)
    assert len(latencies) == 1 and policy.dtype == "float32"
    assert any("falling back to float32" in r.getMessage() for r in caplog.records)
    np.testing.assert_allclose(policy.predict_chunk(_observation(policy)), np.tile(ACT_ACTION_MEAN, (ACT_STEPS, 1)),
                               atol=1e-3)


def _failing_compile(when: str) -> Any:
    """A stand-in for torch.compile that fails at wrap time or on the first call, as a broken toolchain does."""
    import torch

    class Broken(torch.nn.Module):
        def forward(self, *args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("simulated: inductor found no C++ compiler")

    def compile_(target: Any) -> Any:
        if when == "wrap":
            raise RuntimeError("simulated: torch.compile unavailable")
        return Broken()

    return compile_


def test_compile_failing_on_first_inference_falls_back_to_eager(
    act_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(speed, "_torch_compile", _failing_compile("call"))
    policy = load_policy(act_dir, "cpu", compile=True, cameras=list(ACT_CAMERAS), joint_names=FIVE)
    eager = policy.policy.model
    assert policy.compiled and type(eager).__name__ == "Broken"
    with caplog.at_level(logging.WARNING, logger="vla_edge.policies.policy"):
        assert len(policy.warm_up(2)) == 2
    assert not policy.compiled
    assert any("compiled inference failed" in r.getMessage() and "no C++ compiler" in r.getMessage()
               for r in caplog.records)
    assert type(policy.policy.model).__name__ == "ACT"  # the eager module is back
    np.testing.assert_allclose(policy.predict_chunk(_observation(policy)), np.tile(ACT_ACTION_MEAN, (ACT_STEPS, 1)),
                               atol=1e-3)


def test_compile_failing_at_wrap_time_runs_eagerly(
    act_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(speed, "_torch_compile", _failing_compile("wrap"))
    with caplog.at_level(logging.WARNING, logger="vla_edge.policies.speed"):
        policy = load_policy(act_dir, "cpu", compile=True)
    assert not policy.compiled
    assert any("torch.compile of model failed" in r.getMessage() for r in caplog.records)
    assert policy.predict_chunk(_observation(policy)).shape == (ACT_STEPS, 5)


def test_compile_targets_the_per_inference_module_and_reverts(diffusion_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wrapped: list[Any] = []

    def fake_compile(target: Any) -> Any:
        wrapped.append(target)
        return target  # "compiled" to itself: the wrapping is what is checked

    monkeypatch.setattr(speed, "_torch_compile", fake_compile)
    policy = load_policy(diffusion_dir, "cpu", compile=True)
    assert policy.compiled and wrapped == [policy.policy.diffusion.unet]
    assert policy.policy.config.compile_model is False  # LeRobot's own flag stays off: vla-edge compiles


def test_policy_type_without_a_compile_target_runs_eagerly(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="vla_edge.policies.speed"):
        assert speed.compile_policy(object(), "tdmpc") is None
    assert any("does not know what to compile" in r.getMessage() for r in caplog.records)
