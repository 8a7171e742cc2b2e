"""Published models that fit the suite ``vla-edge up`` runs: the demo's camera and the SO-101 joints.

Each is a genuine LeRobot ACT directory with random weights (``save_pretrained`` of the policy
and of its processors, as :mod:`vla_edge.policies.demo` builds the demo policy), with the same
features as the demo policy (camera ``front`` 3x120x160, six joints, chunks of 30), so the
synthetic camera and the emulated arm drive it unchanged. Then the manifest is written by the
code behind ``vla-edge model manifest DIR --name N --version V``, as a publisher would.

What tells the models apart is their action statistics: the unnormalised action is
``mean + std * (network output)``, and a random network's output is of order one. ``GOOD_V1`` and
``GOOD_V2`` keep every joint well inside the SO-101 limits (the updater's default
``jointLimits``); ``BAD_LIMITS`` puts the actions a thousand degrees away, as a model saved with
another robot's (or a broken) normalisation would, so staging rejects it with ``out_of_limits``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from vla_edge.policies.demo import (
    DEMO_CAMERA,
    DEMO_CHUNK,
    DEMO_IMAGE_SHAPE,
    DEMO_JOINTS,
    save_random_policy,
)

MODEL_NAME = "pick-place"
"""One model name, several versions: what a fleet rolls out over time."""


@dataclass(frozen=True)
class ActionStats:
    mean: tuple[float, ...]
    std: float


GOOD_V1 = ActionStats(mean=(10.0, -10.0, 10.0, -10.0, 0.0, 45.0), std=5.0)
GOOD_V2 = ActionStats(mean=(-10.0, 10.0, -10.0, 10.0, 0.0, 30.0), std=5.0)
BAD_LIMITS = ActionStats(mean=(1000.0,) * DEMO_JOINTS, std=5.0)


def save_suite_act(directory: Path, stats: ActionStats, seed: int) -> Path:
    """A random ACT policy with the demo's features and ``stats`` for its actions, saved in ``directory``."""
    import torch
    from lerobot.configs.types import FeatureType, PolicyFeature
    from lerobot.policies.act.configuration_act import ACTConfig

    image = f"observation.images.{DEMO_CAMERA}"
    config = ACTConfig(
        device="cpu",
        input_features={
            image: PolicyFeature(type=FeatureType.VISUAL, shape=DEMO_IMAGE_SHAPE),
            "observation.state": PolicyFeature(type=FeatureType.STATE, shape=(DEMO_JOINTS,)),
        },
        output_features={"action": PolicyFeature(type=FeatureType.ACTION, shape=(DEMO_JOINTS,))},
        chunk_size=DEMO_CHUNK, n_action_steps=DEMO_CHUNK, vision_backbone="resnet18",
        pretrained_backbone_weights=None, dim_model=32, n_heads=2, dim_feedforward=64,
        n_encoder_layers=1, n_decoder_layers=1, use_vae=False, push_to_hub=False,
    )  # fmt: skip
    dataset_stats = {
        "observation.state": {"mean": torch.zeros(DEMO_JOINTS), "std": torch.full((DEMO_JOINTS,), 30.0)},
        "action": {"mean": torch.tensor(stats.mean), "std": torch.full((DEMO_JOINTS,), stats.std)},
        image: {"mean": torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1),
                "std": torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)},
    }  # fmt: skip
    save_random_policy(config, dataset_stats, directory, seed)
    return directory


def publish(directory: Path, version: str, name: str = MODEL_NAME) -> None:
    """Write ``vla_edge_manifest.json`` (and the identity file) as ``vla-edge model manifest`` does.

    Called in-process through the command's own entry point; whether the top-level ``vla-edge``
    command reaches it is checked on its own (tests/test_e2e_model_update.py).
    """
    from vla_edge.updater.cli import main as model_cli

    code = model_cli(["manifest", str(directory), "--name", name, "--version", version, "--robot", "so101_follower"])
    assert code == 0, f"vla-edge model manifest {directory} --version {version} exited {code}"


def published_suite_model(directory: Path, stats: ActionStats, version: str, seed: int) -> Path:
    """:func:`save_suite_act` then :func:`publish`: a model ready for ``model: {source: local, path}``."""
    save_suite_act(directory, stats, seed)
    publish(directory, version)
    return directory
