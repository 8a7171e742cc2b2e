"""What the switch half of the model-update benchmark switches between, and what keeps the loop fed.

* :func:`save_act_version`: a genuine LeRobot ACT directory (``save_pretrained`` of the policy and of
  its processors) shaped like vla-edge's demo policy: camera ``front`` 3x120x160, the six SO-101
  joints, a ResNet-18 backbone with random weights, chunks of 30 actions. Each version gets its own
  seed, so the two versions are really different models of the same cost. Action statistics keep
  every action well inside the SO-101 limits the updater hands the validator (gripper around 40°,
  the other joints around 0°), so the smoke test passes on its merits.
* :class:`FrameFeeder`: writes frames into a shared-memory ring and announces them, as the camera
  component does, so the inference component always has a fresh observation.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np

from vla_edge import messages
from vla_edge.bus.base import Bus
from vla_edge.cameras.ring import FrameRing
from vla_edge.models import write_identity
from vla_edge.policies.demo import save_random_policy

CAMERA = "front"
IMAGE_SHAPE = (3, 120, 160)
JOINTS = 6
CHUNK = 30
ACTION_MEAN = (0.0, 0.0, 0.0, 0.0, 0.0, 40.0)
ACTION_STD_DEG = 5.0
STATE_STD_DEG = 30.0


def save_act_version(directory: Path, name: str, version: str, seed: int) -> Path:
    """Save ACT ``name`` ``version`` (random weights from ``seed``) into ``directory``; returns it."""
    import torch
    from lerobot.configs.types import FeatureType, PolicyFeature
    from lerobot.policies.act.configuration_act import ACTConfig

    image_key = f"observation.images.{CAMERA}"
    config = ACTConfig(
        device="cpu",
        input_features={image_key: PolicyFeature(type=FeatureType.VISUAL, shape=IMAGE_SHAPE),
                        "observation.state": PolicyFeature(type=FeatureType.STATE, shape=(JOINTS,))},
        output_features={"action": PolicyFeature(type=FeatureType.ACTION, shape=(JOINTS,))},
        chunk_size=CHUNK, n_action_steps=CHUNK, vision_backbone="resnet18", pretrained_backbone_weights=None,
        dim_model=64, n_heads=4, dim_feedforward=256, n_encoder_layers=2, n_decoder_layers=1, use_vae=False,
        push_to_hub=False,
    )
    stats = {
        "observation.state": {"mean": torch.zeros(JOINTS), "std": torch.full((JOINTS,), STATE_STD_DEG)},
        "action": {"mean": torch.tensor(ACTION_MEAN), "std": torch.full((JOINTS,), ACTION_STD_DEG)},
        image_key: {"mean": torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1),
                    "std": torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)},
    }
    save_random_policy(config, stats, directory, seed)
    write_identity(directory, name, version)
    return directory


class FrameFeeder:
    """Camera ``front`` at ``hz``: a few distinct images in turn, each announced with a FrameReady."""

    def __init__(self, bus: Bus, frame_dir: Path, hz: float = 30.0) -> None:
        self.bus = bus
        self.period = 1.0 / hz
        height, width = IMAGE_SHAPE[1:]
        self.ring = FrameRing.create(frame_dir, CAMERA, height, width)
        rng = np.random.default_rng(7)
        self.images = [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(8)]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="frame-feeder", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        height, width = IMAGE_SHAPE[1:]
        index = 0
        deadline = time.monotonic()
        while not self._stop.is_set():
            captured = time.time()
            written = self.ring.write(self.images[index % len(self.images)], captured)
            frame = messages.FrameReady(camera=CAMERA, seq=written.seq, t_capture=captured, height=height,
                                        width=width, slot=written.slot, segment=str(self.ring.path))
            self.bus.publish(*messages.encode(frame))
            index += 1
            deadline += self.period
            self._stop.wait(max(0.0, deadline - time.monotonic()))

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        self.ring.close()
