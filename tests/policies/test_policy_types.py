"""Policy types through LeRobot's factory: ACT and Diffusion run; VLA types name their missing extras."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from support.policy import (
    ACT_ACTION_MEAN,
    ACT_CAMERAS,
    ACT_STEPS,
    DIFFUSION_JOINTS,
    DIFFUSION_OBS_STEPS,
    DIFFUSION_STEPS,
    IMAGE_SHAPE,
    simulate_missing_module,
    vla_policy_dir,
)

from vla_edge.errors import PolicyError
from vla_edge.policies import LoadedPolicy, checks, load_policy


def _images(cameras: tuple[str, ...] | list[str], seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {camera: rng.integers(0, 256, (IMAGE_SHAPE[1], IMAGE_SHAPE[2], 3), dtype=np.uint8) for camera in cameras}


def test_act_predicts_one_chunk_from_one_observation(act_policy: LoadedPolicy) -> None:
    assert act_policy.policy_type == "act" and act_policy.observation_steps == 1
    assert not act_policy.needs_language
    observation = act_policy.build_observation(_images(ACT_CAMERAS), [0.5] * 5, "stack the cups")
    actions = act_policy.predict_chunk(observation)
    assert actions.shape == (ACT_STEPS, 5) and actions.dtype == np.float32
    np.testing.assert_allclose(actions, np.tile(ACT_ACTION_MEAN, (ACT_STEPS, 1)), atol=1e-3)


def test_diffusion_loads_through_the_factory_and_predicts_a_chunk(diffusion_policy: LoadedPolicy) -> None:
    assert diffusion_policy.policy_type == "diffusion"
    assert type(diffusion_policy.policy).__name__ == "DiffusionPolicy"
    assert diffusion_policy.observation_steps == DIFFUSION_OBS_STEPS
    assert diffusion_policy.camera_names == ["front"] and diffusion_policy.state_dim == DIFFUSION_JOINTS
    current = diffusion_policy.build_observation(_images(["front"], 1), [10.0] * DIFFUSION_JOINTS)
    older = diffusion_policy.build_observation(_images(["front"], 2), [5.0] * DIFFUSION_JOINTS)
    actions = diffusion_policy.predict_chunk(current, history=[older])
    assert actions.shape == (DIFFUSION_STEPS, DIFFUSION_JOINTS)
    assert np.isfinite(actions).all()
    assert float(np.abs(actions).max()) <= 45.0 + 1e-3  # sample clipped to [-1, 1], unnormalised to [-45, 45]
    assert diffusion_policy.predict_chunk(current).shape == (DIFFUSION_STEPS, DIFFUSION_JOINTS)  # no history yet


@pytest.fixture
def conditioning(diffusion_policy: LoadedPolicy, monkeypatch: pytest.MonkeyPatch) -> list[np.ndarray]:
    """The normalised state history Diffusion conditions on, per inference (spied where the model reads it)."""
    seen: list[np.ndarray] = []
    model = diffusion_policy.policy.diffusion
    original = model.generate_actions

    def spy(batch: dict[str, Any], noise: Any = None) -> Any:
        seen.append(batch["observation.state"][0].float().numpy().copy())  # (n_obs_steps, joints)
        assert tuple(batch["observation.images"].shape[:3]) == (1, DIFFUSION_OBS_STEPS, 1)  # batch, steps, cameras
        return original(batch, noise=noise)

    monkeypatch.setattr(model, "generate_actions", spy)
    return seen


def test_diffusion_conditions_on_the_given_history_then_the_current_observation(
    diffusion_policy: LoadedPolicy, conditioning: list[np.ndarray]
) -> None:
    # state statistics are min -90 / max 90 (MIN_MAX to [-1, 1]): 45 degrees normalises to 0.5
    current = diffusion_policy.build_observation(_images(["front"]), [45.0] * DIFFUSION_JOINTS)
    older = diffusion_policy.build_observation(_images(["front"]), [-45.0] * DIFFUSION_JOINTS)
    diffusion_policy.predict_chunk(current, history=[older])
    np.testing.assert_allclose(conditioning[-1][:, 0], [-0.5, 0.5], atol=1e-5)
    # the next inference does not see the previous one's observations (they are not one actionDt old)
    later = diffusion_policy.build_observation(_images(["front"]), [9.0] * DIFFUSION_JOINTS)
    diffusion_policy.predict_chunk(later)
    np.testing.assert_allclose(conditioning[-1][:, 0], [0.1, 0.1], atol=1e-5)  # LeRobot's start-of-episode rule


def test_only_the_newest_history_entries_are_used(diffusion_policy: LoadedPolicy, conditioning: list[np.ndarray]) -> None:
    build = diffusion_policy.build_observation
    history = [build(_images(["front"]), [value] * DIFFUSION_JOINTS) for value in (-90.0, -45.0)]
    diffusion_policy.predict_chunk(build(_images(["front"]), [90.0] * DIFFUSION_JOINTS), history=history)
    np.testing.assert_allclose(conditioning[-1][:, 0], [-0.5, 1.0], atol=1e-5)


def test_warm_up_runs_synthetic_observations_of_the_right_shapes(diffusion_policy: LoadedPolicy) -> None:
    latencies = diffusion_policy.warm_up(2, task="")
    assert len(latencies) == 2 and all(value > 0 for value in latencies)
    observation = diffusion_policy.synthetic_observation()
    assert tuple(observation["observation.images.front"].shape) == IMAGE_SHAPE
    assert tuple(observation["observation.state"].shape) == (DIFFUSION_JOINTS,)


# --- policy types whose extra is not installed ------------------------------------------------


def _vla_policy_dir(tmp_path: Path, demo_dir: Path, policy_type: str) -> Path:
    return vla_policy_dir(tmp_path / policy_type, demo_dir, policy_type, (3, 120, 160))


@pytest.fixture
def untouched(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if loading gets as far as the policy class, its weights or its processors."""
    from lerobot.policies import factory

    def touched(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("loading went past the requirement check")

    monkeypatch.setattr(factory, "get_policy_class", touched)
    monkeypatch.setattr(factory, "make_pre_post_processors", touched)


@pytest.mark.parametrize(
    ("policy_type", "command"),
    [
        ("smolvla", 'pip install "lerobot[smolvla]==0.4.4"'),
        ("pi0", "fix/lerobot_openpi"),
        ("pi05", "fix/lerobot_openpi"),
    ],
)
def test_missing_extra_fails_before_anything_is_loaded(
    tmp_path: Path, demo_dir: Path, policy_type: str, command: str, untouched: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _vla_policy_dir(tmp_path, demo_dir, policy_type)
    simulate_missing_module(monkeypatch, "transformers")
    with pytest.raises(PolicyError) as info:
        load_policy(path, cameras=["front"], joint_names=[f"j{i}" for i in range(6)])
    text = str(info.value)
    assert f"is a {policy_type!r} policy, which needs transformers" in text
    assert command in text and "Nothing was loaded" in text


def test_install_command_follows_the_installed_lerobot_metadata() -> None:
    import importlib.metadata

    extras = set(importlib.metadata.metadata("lerobot").get_all("Provides-Extra") or [])
    assert "smolvla" in extras  # LeRobot 0.4.4 names the SmolVLA extra "smolvla"
    assert checks.install_command(checks.REQUIREMENTS["smolvla"]) == 'pip install "lerobot[smolvla]==0.4.4"'
    pi = checks.install_command(checks.REQUIREMENTS["pi0"])
    if "pi" in extras:
        assert pi == 'pip install "lerobot[pi]==0.4.4"'
    else:  # the PyPI wheel of 0.4.4 cannot carry the git dependency its source pyproject's "pi" extra has
        assert pi.startswith(f'pip install "{checks.PI_TRANSFORMERS}"') and "declares no 'pi' extra" in pi
        assert 'pip install -e ".[pi]"' in pi


def test_missing_extra_is_real_on_this_machine_when_transformers_is_absent(tmp_path: Path, demo_dir: Path) -> None:
    if checks.module_available("transformers"):
        pytest.skip("transformers is installed here; the simulated case above covers the message")
    path = _vla_policy_dir(tmp_path, demo_dir, "smolvla")
    with pytest.raises(PolicyError, match=r"'smolvla' policy, which needs transformers, num2words"):
        load_policy(path)


@pytest.mark.parametrize(
    ("policy_type", "steps", "expected"),
    [
        ("act", ["normalizer_processor", "device_processor"], False),
        ("diffusion", [], False),
        ("smolvla", [], True),
        ("pi05", [], True),
        ("some_future_vla", ["tokenizer_processor"], True),
    ],
)
def test_language_conditioned_policies_are_recognised(policy_type: str, steps: list[str], expected: bool) -> None:
    assert checks.needs_language(policy_type, steps) is expected
