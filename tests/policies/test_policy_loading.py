"""Loading LeRobot policy directories: what loads, and the errors for what does not."""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from support.policy import ACT_ACTION_MEAN

from vla_edge.errors import PolicyError
from vla_edge.policies import LoadedPolicy, load_policy, resolve_device

FIVE = ["a", "b", "c", "d", "e"]


@pytest.fixture
def copy_of(tmp_path: Path):
    def make(source: Path) -> Path:
        target = tmp_path / "policy"
        shutil.copytree(source, target)
        return target

    return make


def test_policy_saved_with_save_pretrained_loads_and_runs_its_processors(act_dir: Path) -> None:
    policy = load_policy(act_dir, cameras=["wrist", "top"], joint_names=FIVE)
    assert isinstance(policy, LoadedPolicy)
    assert sorted(policy.camera_names) == ["top", "wrist"]
    assert policy.image_shape("top") == (3, 48, 64)
    assert (policy.state_dim, policy.action_dim, policy.n_action_steps) == (5, 5, 8)
    policy.check_io(["wrist", "top"], FIVE)
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
    np.testing.assert_allclose(actions, np.tile(ACT_ACTION_MEAN, (8, 1)), atol=1e-3)


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


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda data: data[: len(data) // 2], id="truncated"),
        pytest.param(lambda data: b"\x00" * len(data), id="zeroed"),
        pytest.param(lambda data: b"not safetensors at all", id="garbage"),
    ],
)
def test_broken_safetensors_is_a_policy_error(demo_dir: Path, copy_of: Any, damage: Any) -> None:
    path = copy_of(demo_dir)
    weights = path / "model.safetensors"
    weights.write_bytes(damage(weights.read_bytes()))
    with pytest.raises(PolicyError, match="cannot load the weights in .*model.safetensors"):
        load_policy(path)


def test_broken_processor_state_is_a_policy_error(demo_dir: Path, copy_of: Any) -> None:
    path = copy_of(demo_dir)
    (path / "policy_postprocessor_step_0_unnormalizer_processor.safetensors").write_bytes(b"\x01\x02garbage")
    with pytest.raises(PolicyError, match="cannot load the processors"):
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


def _with_config(path: Path, change: Any) -> Path:
    config = json.loads((path / "config.json").read_text())
    change(config)
    (path / "config.json").write_text(json.dumps(config))
    return path


@pytest.mark.parametrize(
    ("cameras", "joints", "messages"),
    [
        pytest.param(["top", "side"], FIVE, [r"cameras \['side'\] are not inputs", r"needs cameras \['wrist'\]"],
                     id="camera-name"),
        pytest.param(["top"], FIVE, [r"needs cameras \['wrist'\]", r"reads 2 camera\(s\), 1 are configured"],
                     id="camera-count"),
        pytest.param(["top", "wrist", "side"], FIVE, [r"cameras \['side'\] are not inputs", "reads 2 camera"],
                     id="extra-camera"),
        pytest.param(["top", "wrist"], FIVE[:4], [r"observation.state has 5 values but 4 joints",
                                                   r"action has 5 values but 4 joints"], id="joint-count"),
    ],
)
def test_mismatch_is_refused_before_the_weights_with_expected_and_configured(
    act_dir: Path, cameras: list[str], joints: list[str], messages: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from lerobot.policies.act.modeling_act import ACTPolicy

    def no_weights(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("weights were loaded for a policy that does not fit the configuration")

    monkeypatch.setattr(ACTPolicy, "from_pretrained", no_weights)
    with pytest.raises(PolicyError) as info:
        load_policy(act_dir, cameras=cameras, joint_names=joints)
    text = str(info.value)
    for message in messages:
        assert re.search(message, text), (message, text)
    assert "Policy expects: cameras top (3, 48, 64), wrist (3, 48, 64); observation.state (5,); action (5,)" in text
    assert f"Configured: cameras {cameras}, {len(joints)} jointNames {joints}" in text


def test_policy_expecting_other_image_channels_is_refused(act_dir: Path, copy_of: Any) -> None:
    def grey_wrist(config: dict[str, Any]) -> None:
        config["input_features"]["observation.images.wrist"]["shape"] = [1, 48, 64]

    path = _with_config(copy_of(act_dir), grey_wrist)
    with pytest.raises(PolicyError, match=r"camera 'wrist': the policy expects 1-channel images \(1, 48, 64\), "
                                          r"cameras deliver 3-channel RGB frames"):
        load_policy(path, cameras=["top", "wrist"], joint_names=FIVE)


def test_policy_with_an_input_vla_edge_cannot_feed_is_refused(act_dir: Path, copy_of: Any) -> None:
    def add_environment_state(config: dict[str, Any]) -> None:
        config["input_features"]["observation.environment_state"] = {"type": "ENV", "shape": [4]}

    path = _with_config(copy_of(act_dir), add_environment_state)
    with pytest.raises(PolicyError, match=r"needs inputs \['observation.environment_state'\]"):
        load_policy(path, cameras=["top", "wrist"], joint_names=FIVE)


def test_device_falls_back_to_cpu_when_cuda_is_missing(caplog: pytest.LogCaptureFixture) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA; the fallback cannot be observed")
    with caplog.at_level(logging.WARNING):
        assert resolve_device("cuda") == "cpu"
    assert any("falling back to CPU" in r.getMessage() for r in caplog.records)
    assert resolve_device("cpu") == "cpu"
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert resolve_device("auto") == ("mps" if torch.backends.mps.is_available() else "cpu")
    assert not caplog.records, "auto on a machine without a GPU is not a fallback worth a warning"
    with pytest.raises(PolicyError, match="unknown device"):
        resolve_device("tpu")


def test_cuda_request_loads_on_cpu_without_cuda(demo_dir: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    policy = load_policy(demo_dir, "cuda")
    assert policy.device == "cpu"
    assert next(policy.policy.parameters()).device.type == "cpu"
