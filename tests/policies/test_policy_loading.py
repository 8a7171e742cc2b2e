"""Loading LeRobot policy directories: what loads, and the errors for what does not."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from vla_edge.errors import PolicyError
from vla_edge.policies import LoadedPolicy, load_policy, resolve_device


def save_small_act(directory: Path, action_mean: list[float], action_std: float) -> None:
    """A tiny ACT policy with two cameras and five joints, saved the way lerobot-train does."""
    import torch
    from lerobot.configs.types import FeatureType, PolicyFeature
    from lerobot.policies.act.configuration_act import ACTConfig
    from lerobot.policies.act.modeling_act import ACTPolicy
    from lerobot.policies.factory import make_pre_post_processors

    joints = len(action_mean)
    config = ACTConfig(
        device="cpu",
        input_features={
            "observation.images.top": PolicyFeature(type=FeatureType.VISUAL, shape=(3, 48, 64)),
            "observation.images.wrist": PolicyFeature(type=FeatureType.VISUAL, shape=(3, 48, 64)),
            "observation.state": PolicyFeature(type=FeatureType.STATE, shape=(joints,)),
        },
        output_features={"action": PolicyFeature(type=FeatureType.ACTION, shape=(joints,))},
        chunk_size=10,
        n_action_steps=8,
        pretrained_backbone_weights=None,
        dim_model=32,
        n_heads=2,
        dim_feedforward=64,
        n_encoder_layers=1,
        use_vae=False,
        push_to_hub=False,
    )
    stats = {
        "observation.state": {"mean": torch.zeros(joints), "std": torch.ones(joints)},
        "action": {"mean": torch.tensor(action_mean), "std": torch.full((joints,), action_std)},
        "observation.images.top": {"mean": torch.full((3, 1, 1), 0.5), "std": torch.full((3, 1, 1), 0.25)},
        "observation.images.wrist": {"mean": torch.full((3, 1, 1), 0.5), "std": torch.full((3, 1, 1), 0.25)},
    }
    torch.manual_seed(3)
    policy = ACTPolicy(config)
    preprocessor, postprocessor = make_pre_post_processors(config, dataset_stats=stats)
    policy.save_pretrained(directory)
    preprocessor.save_pretrained(directory)
    postprocessor.save_pretrained(directory)


@pytest.fixture(scope="module")
def small_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("small-act")
    # std ~0: every unnormalised action equals the mean, which proves the postprocessor ran
    save_small_act(directory, action_mean=[10.0, -20.0, 30.0, -40.0, 50.0], action_std=1e-6)
    return directory


@pytest.fixture
def copy_of(tmp_path: Path):
    def make(source: Path) -> Path:
        target = tmp_path / "policy"
        shutil.copytree(source, target)
        return target

    return make


def test_policy_saved_with_save_pretrained_loads_and_runs_its_processors(small_dir: Path) -> None:
    policy = load_policy(small_dir)
    assert isinstance(policy, LoadedPolicy)
    assert sorted(policy.camera_names) == ["top", "wrist"]
    assert policy.image_shape("top") == (3, 48, 64)
    assert (policy.state_dim, policy.action_dim, policy.n_action_steps) == (5, 5, 8)
    policy.check_io(["wrist", "top"], ["a", "b", "c", "d", "e"])
    rng = np.random.default_rng(0)
    images = {
        "top": rng.integers(0, 256, (480, 640, 3), dtype=np.uint8),  # resized to 48x64
        "wrist": rng.integers(0, 256, (48, 64, 1), dtype=np.uint8),  # grey to 3 channels
    }
    observation = policy.build_observation(images, [1.0, 2.0, 3.0, 4.0, 5.0], "")
    assert tuple(observation["observation.images.top"].shape) == (3, 48, 64)
    assert tuple(observation["observation.images.wrist"].shape) == (3, 48, 64)
    assert (
        0.0
        <= float(observation["observation.images.top"].min())
        <= float(observation["observation.images.top"].max())
        <= 1.0
    )
    actions = policy.predict_chunk(observation)
    assert actions.shape == (8, 5)  # n_action_steps of the chunk_size=10 prediction
    np.testing.assert_allclose(actions, np.tile([10.0, -20.0, 30.0, -40.0, 50.0], (8, 1)), atol=1e-3)


@pytest.mark.parametrize("missing", ["model.safetensors", "config.json", "policy_preprocessor.json"])
def test_incomplete_directory_names_the_missing_file(demo_dir: Path, copy_of: Any, missing: str) -> None:
    path = copy_of(demo_dir)
    (path / missing).unlink()
    with pytest.raises(PolicyError, match="incomplete") as info:
        load_policy(path)
    assert missing in str(info.value) and "save_pretrained" in str(info.value)


def test_missing_processor_state_file_is_reported(demo_dir: Path, copy_of: Any) -> None:
    path = copy_of(demo_dir)
    (path / "policy_postprocessor_step_0_unnormalizer_processor.safetensors").unlink()
    with pytest.raises(PolicyError, match="unnormalizer_processor.safetensors, which is missing"):
        load_policy(path)


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="does not exist.*policyPath"):
        load_policy(tmp_path / "nowhere")


def test_broken_config_is_a_policy_error(demo_dir: Path, copy_of: Any) -> None:
    path = copy_of(demo_dir)
    (path / "config.json").write_text('{"type": "act", "chunk_size": ')
    with pytest.raises(PolicyError, match="not a valid LeRobot policy config"):
        load_policy(path)


def test_unknown_policy_type_is_a_policy_error(demo_dir: Path, copy_of: Any) -> None:
    path = copy_of(demo_dir)
    config = json.loads((path / "config.json").read_text())
    config["type"] = "no_such_policy"
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(PolicyError, match="not a valid LeRobot policy config.*no_such_policy"):
        load_policy(path)


def test_weights_that_do_not_fit_the_config_are_refused(demo_dir: Path, copy_of: Any) -> None:
    path = copy_of(demo_dir)
    config = json.loads((path / "config.json").read_text())
    config["dim_model"] = 32
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(PolicyError, match="cannot load the weights"):
        load_policy(path)


def test_processor_step_outside_lerobot_is_not_imported(demo_dir: Path, copy_of: Any) -> None:
    path = copy_of(demo_dir)
    spec = json.loads((path / "policy_preprocessor.json").read_text())
    spec["steps"][0] = {"class": "os.system", "config": {}}
    (path / "policy_preprocessor.json").write_text(json.dumps(spec))
    with pytest.raises(PolicyError, match="refusing to import"):
        load_policy(path)


def test_feature_mismatch_is_explained(demo_policy: LoadedPolicy) -> None:
    six = ["shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper"]
    demo_policy.check_io(["front"], six)
    with pytest.raises(PolicyError, match=r"cameras \['side'\] are not inputs.*\['front'\]"):
        demo_policy.check_io(["side"], six)
    with pytest.raises(PolicyError, match=r"needs cameras \['front'\]"):
        demo_policy.check_io([], six)
    with pytest.raises(PolicyError, match="6 values but 5 joints"):
        demo_policy.check_io(["front"], six[:5])


def test_device_falls_back_to_cpu_when_cuda_is_missing(caplog: pytest.LogCaptureFixture) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA; the fallback cannot be observed")
    with caplog.at_level(logging.WARNING):
        assert resolve_device("cuda") == "cpu"
    assert any("falling back to CPU" in r.getMessage() for r in caplog.records)
    assert resolve_device("cpu") == "cpu"
    with pytest.raises(PolicyError, match="unknown device"):
        resolve_device("tpu")


def test_cuda_request_loads_on_cpu_without_cuda(demo_dir: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    policy = load_policy(demo_dir, "cuda")
    assert policy.device == "cpu"
    assert next(policy.policy.parameters()).device.type == "cpu"
