"""A small, randomly initialised ACT policy for demonstrating the pipeline end to end.

The demo policy is UNTRAINED: its actions are a deterministic function of the camera
image and joint state, but they do nothing useful. It exists so the suite can run
(camera → inference → actuator) on a machine without a trained model and without
network access: nothing is downloaded (the ResNet-18 backbone starts from random
weights, not ImageNet).

It is a genuine LeRobot policy directory (``save_pretrained`` of an ``ACTPolicy`` and of
the processors from ``make_pre_post_processors``), so it exercises exactly the code
path a trained model uses.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

from vla_edge.errors import PolicyError
from vla_edge.models import (
    DEMO_MODEL_DIRNAME,
    IDENTITY_FILE,
    demo_model_dir,
    write_identity,
)

log = logging.getLogger(__name__)

DEMO_NAME = DEMO_MODEL_DIRNAME
DEMO_VERSION = "0.0.1"
DEMO_CAMERA = "front"
DEMO_IMAGE_SHAPE = (3, 120, 160)
DEMO_JOINTS = 6
DEMO_CHUNK = 30
DEMO_SEED = 0

ACTION_STD_DEG = 20.0
"""Unnormalised actions are roughly mean 0, std 20 degrees: the arm moves and the actuator's limits show."""
STATE_STD_DEG = 30.0

UNTRAINED_WARNING = (
    "the demo policy %s is UNTRAINED (random weights): it only demonstrates the pipeline and its actions "
    "are meaningless. Deploy a trained policy (policyPath) before using the arm for real."
)


def demo_policy_dir(cache_dir: Path) -> Path:
    """Where the demo policy lives; the model-updater reports the same directory."""
    return demo_model_dir(Path(cache_dir))


def is_demo_policy(path: Path) -> bool:
    """True when ``path`` holds the generated demo policy (by its identity file)."""
    import json

    identity = Path(path) / IDENTITY_FILE
    try:
        return json.loads(identity.read_text()).get("name") == DEMO_NAME
    except (OSError, ValueError, AttributeError):
        return False


def ensure_demo_policy(cache_dir: Path) -> Path:
    """Return the demo policy directory under ``cache_dir``, building it the first time.

    The directory is built in a temporary sibling and renamed into place, so a reader
    (or a concurrent builder in another process) never sees a half-written policy.
    """
    target = demo_policy_dir(cache_dir)
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    log.warning(UNTRAINED_WARNING, target)
    started = time.monotonic()
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        _build(staging)
        try:
            os.rename(staging, target)
        except OSError:
            if not target.is_dir():
                raise
            log.info("another process created %s first; using it", target)
            return target
    except Exception as exc:
        raise PolicyError(f"could not create the demo policy in {target}: {type(exc).__name__}: {exc}") from exc
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    log.info("created demo policy %s in %.1f s", target, time.monotonic() - started)
    return target


def save_random_policy(config: object, dataset_stats: dict, directory: Path, seed: int) -> Path:
    """Save a LeRobot policy of ``config`` with seeded random weights and its processors (``dataset_stats``),
    with LeRobot's own ``save_pretrained``: what the demo policy, test models and benchmarks are made of."""
    import torch
    from lerobot.policies.factory import get_policy_class, make_pre_post_processors

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        policy = get_policy_class(config.type)(config)  # type: ignore[attr-defined]
    preprocessor, postprocessor = make_pre_post_processors(config, dataset_stats=dataset_stats)
    directory.mkdir(parents=True, exist_ok=True)
    policy.save_pretrained(directory)
    preprocessor.save_pretrained(directory)
    postprocessor.save_pretrained(directory)
    return directory


def _build(directory: Path) -> None:
    import torch
    from lerobot.configs.types import FeatureType, PolicyFeature
    from lerobot.policies.act.configuration_act import ACTConfig

    config = ACTConfig(
        device="cpu",
        input_features={
            f"observation.images.{DEMO_CAMERA}": PolicyFeature(type=FeatureType.VISUAL, shape=DEMO_IMAGE_SHAPE),
            "observation.state": PolicyFeature(type=FeatureType.STATE, shape=(DEMO_JOINTS,)),
        },
        output_features={"action": PolicyFeature(type=FeatureType.ACTION, shape=(DEMO_JOINTS,))},
        chunk_size=DEMO_CHUNK,
        n_action_steps=DEMO_CHUNK,
        vision_backbone="resnet18",
        pretrained_backbone_weights=None,
        dim_model=64,
        n_heads=4,
        dim_feedforward=256,
        n_encoder_layers=2,
        n_decoder_layers=1,
        use_vae=False,
        push_to_hub=False,
    )
    stats = {
        "observation.state": {
            "mean": torch.zeros(DEMO_JOINTS),
            "std": torch.full((DEMO_JOINTS,), STATE_STD_DEG),
        },
        "action": {
            "mean": torch.zeros(DEMO_JOINTS),
            "std": torch.full((DEMO_JOINTS,), ACTION_STD_DEG),
        },
        # ImageNet statistics, per channel, broadcast over height and width.
        f"observation.images.{DEMO_CAMERA}": {
            "mean": torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1),
            "std": torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1),
        },
    }
    save_random_policy(config, stats, directory, DEMO_SEED)
    write_identity(
        directory,
        DEMO_NAME,
        DEMO_VERSION,
        untrained=True,
        description="Randomly initialised ACT policy for demonstrating the vla-edge pipeline. Not for real use.",
    )
