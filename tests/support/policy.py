"""Real LeRobot policies for the policy and inference tests, each built once per session.

Every policy here is a genuine LeRobot directory: a policy with random weights saved with
``save_pretrained`` together with the processors from ``make_pre_post_processors``, then
loaded back through vla-edge's loader (nothing is downloaded; backbones start random).
They are small (48x64 images, tiny transformer/U-Net widths) to keep CPU time low.

* ``demo``: the untrained demo ACT policy (camera ``front`` 120x160, six SO-101 joints).
* ``act``: ACT with cameras ``top`` and ``wrist`` and five joints; its action std is ~0,
  so every unnormalised action equals :data:`ACT_ACTION_MEAN` (proof the postprocessor ran).
* ``diffusion``: Diffusion Policy with camera ``front``, six joints, ``n_obs_steps`` 2.
* ``act_versions``: two versions of one ACT model (``arm-act`` 1 and 2, identity files written),
  same features as ``act`` but other weights and action means: two models to switch between.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

_cache: dict[str, Any] = {}

ACT_ACTION_MEAN = [10.0, -20.0, 30.0, -40.0, 50.0]
ACT_V2_ACTION_MEAN = [-5.0, 15.0, -25.0, 35.0, -45.0]
ACT_MODEL_NAME = "arm-act"
ACT_CAMERAS = ("top", "wrist")
ACT_CHUNK, ACT_STEPS = 10, 8
DIFFUSION_JOINTS = 6
DIFFUSION_OBS_STEPS, DIFFUSION_STEPS = 2, 6
IMAGE_SHAPE = (3, 48, 64)


def demo_cache_dir(factory: pytest.TempPathFactory) -> Path:
    """Cache directory that holds the demo policy (built on first use)."""
    if "cache" not in _cache:
        from vla_edge.policies import ensure_demo_policy

        cache = factory.mktemp("demo-cache")
        ensure_demo_policy(cache)
        _cache["cache"] = cache
    return _cache["cache"]


def demo_policy_path(factory: pytest.TempPathFactory) -> Path:
    from vla_edge.policies import demo_policy_dir

    return demo_policy_dir(demo_cache_dir(factory))


def loaded_demo_policy(factory: pytest.TempPathFactory) -> Any:
    """The demo policy loaded once with LeRobot's code (a LoadedPolicy)."""
    if "loaded" not in _cache:
        from vla_edge.policies import load_policy

        _cache["loaded"] = load_policy(demo_policy_path(factory), "cpu")
    return _cache["loaded"]


def _save(directory: Path, config: Any, stats: dict[str, Any], seed: int) -> None:
    import torch
    from lerobot.policies.factory import get_policy_class, make_pre_post_processors

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        policy = get_policy_class(config.type)(config)
    preprocessor, postprocessor = make_pre_post_processors(config, dataset_stats=stats)
    policy.save_pretrained(directory)
    preprocessor.save_pretrained(directory)
    postprocessor.save_pretrained(directory)


def _image_stats(keys: list[str]) -> dict[str, Any]:
    import torch

    return {key: {"mean": torch.full((3, 1, 1), 0.5), "std": torch.full((3, 1, 1), 0.25),
                  "min": torch.zeros(3, 1, 1), "max": torch.ones(3, 1, 1)} for key in keys}


def save_small_act(directory: Path, action_mean: list[float] = ACT_ACTION_MEAN, seed: int = 3) -> None:
    """ACT: cameras top and wrist (3x48x64), five joints, chunk 10 of which 8 are used."""
    import torch
    from lerobot.configs.types import FeatureType, PolicyFeature
    from lerobot.policies.act.configuration_act import ACTConfig

    joints = len(action_mean)
    images = [f"observation.images.{camera}" for camera in ACT_CAMERAS]
    config = ACTConfig(
        device="cpu",
        input_features={
            **{key: PolicyFeature(type=FeatureType.VISUAL, shape=IMAGE_SHAPE) for key in images},
            "observation.state": PolicyFeature(type=FeatureType.STATE, shape=(joints,)),
        },
        output_features={"action": PolicyFeature(type=FeatureType.ACTION, shape=(joints,))},
        chunk_size=ACT_CHUNK, n_action_steps=ACT_STEPS, pretrained_backbone_weights=None,
        dim_model=32, n_heads=2, dim_feedforward=64, n_encoder_layers=1, use_vae=False, push_to_hub=False,
    )
    stats = {
        "observation.state": {"mean": torch.zeros(joints), "std": torch.ones(joints)},
        # std ~0: every unnormalised action equals the mean, which proves the postprocessor ran
        "action": {"mean": torch.tensor(action_mean), "std": torch.full((joints,), 1e-6)},
        **_image_stats(images),
    }
    _save(directory, config, stats, seed=seed)


def save_small_diffusion(directory: Path) -> None:
    """Diffusion Policy: camera front (3x48x64), six joints, two observations, 6 of a horizon of 8 actions."""
    import torch
    from lerobot.configs.types import FeatureType, PolicyFeature
    from lerobot.policies.diffusion.configuration_diffusion import DiffusionConfig

    joints = DIFFUSION_JOINTS
    config = DiffusionConfig(
        device="cpu",
        input_features={
            "observation.images.front": PolicyFeature(type=FeatureType.VISUAL, shape=IMAGE_SHAPE),
            "observation.state": PolicyFeature(type=FeatureType.STATE, shape=(joints,)),
        },
        output_features={"action": PolicyFeature(type=FeatureType.ACTION, shape=(joints,))},
        n_obs_steps=DIFFUSION_OBS_STEPS, horizon=8, n_action_steps=DIFFUSION_STEPS,
        crop_shape=None, pretrained_backbone_weights=None, spatial_softmax_num_keypoints=4,
        down_dims=(16, 32), kernel_size=3, n_groups=4, diffusion_step_embed_dim=16,
        num_train_timesteps=20, num_inference_steps=4, push_to_hub=False,
    )
    stats = {
        "observation.state": {"min": torch.full((joints,), -90.0), "max": torch.full((joints,), 90.0)},
        "action": {"min": torch.full((joints,), -45.0), "max": torch.full((joints,), 45.0)},
        **_image_stats(["observation.images.front"]),
    }
    _save(directory, config, stats, seed=5)


_BUILDERS = {"act": save_small_act, "diffusion": save_small_diffusion}


def policy_path(factory: pytest.TempPathFactory, name: str) -> Path:
    """Directory of test policy ``name`` (``act`` or ``diffusion``), saved on first use."""
    key = f"dir:{name}"
    if key not in _cache:
        directory = factory.mktemp(f"policy-{name}")
        _BUILDERS[name](directory)
        _cache[key] = directory
    return _cache[key]


def loaded_policy(factory: pytest.TempPathFactory, name: str) -> Any:
    """Test policy ``name`` loaded once through vla-edge's loader (a LoadedPolicy)."""
    key = f"loaded:{name}"
    if key not in _cache:
        from vla_edge.policies import load_policy

        _cache[key] = load_policy(policy_path(factory, name), "cpu")
    return _cache[key]


def act_versions(factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Directories of ``arm-act`` versions 1 and 2 (saved on first use): two different models to switch between."""
    if "act-versions" not in _cache:
        from vla_edge.models import write_identity

        paths = []
        for version, mean, seed in (("1", ACT_ACTION_MEAN, 3), ("2", ACT_V2_ACTION_MEAN, 11)):
            directory = factory.mktemp(f"{ACT_MODEL_NAME}-v{version}")
            save_small_act(directory, mean, seed)
            write_identity(directory, ACT_MODEL_NAME, version)
            paths.append(directory)
        _cache["act-versions"] = (paths[0], paths[1])
    return _cache["act-versions"]


def vla_policy_dir(target: Path, source: Path, policy_type: str, image_shape: tuple[int, int, int]) -> Path:
    """A copy of policy directory ``source`` whose config.json is a real LeRobot ``policy_type`` config.

    For policy types whose extra is not installed: loading must stop at the config, so the
    other files (weights, processors, from ``source``) are never read. Camera ``front`` of
    ``image_shape``, six joints.
    """
    import shutil

    from lerobot.configs.types import FeatureType, PolicyFeature
    from lerobot.policies.factory import make_policy_config

    shutil.copytree(source, target)
    config = make_policy_config(
        policy_type, device="cpu", push_to_hub=False,
        input_features={"observation.images.front": PolicyFeature(type=FeatureType.VISUAL, shape=image_shape),
                        "observation.state": PolicyFeature(type=FeatureType.STATE, shape=(6,))},
        output_features={"action": PolicyFeature(type=FeatureType.ACTION, shape=(6,))},
    )
    (target / "config.json").unlink()
    config._save_pretrained(target)
    return target


def simulate_missing_module(monkeypatch: pytest.MonkeyPatch, module: str) -> None:
    """Make ``module`` (and its submodules) look uninstalled to vla-edge's requirement check."""
    from vla_edge.policies import checks

    real = checks.module_available
    monkeypatch.setattr(checks, "module_available", lambda name: False if name.split(".")[0] == module else real(name))


CRASH_HOOK = '''
"""Test-only: makes LeRobot loading in this process die by SIGKILL, as the kernel's OOM killer would."""
import os
import signal

import vla_edge.policies.loading as loading


def _killed(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)


loading.load_policy = _killed
'''


def crash_validators_while_loading(directory: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every Python process started from the test process from now on dies by SIGKILL when it loads a policy.

    A ``sitecustomize`` module on ``PYTHONPATH`` of the test process's environment (restored after the
    test) replaces the loader in the child; nothing in vla-edge's code knows about it.
    """
    import os

    hook = directory / "crash-hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(CRASH_HOOK)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(hook), os.environ.get("PYTHONPATH", "")])))
