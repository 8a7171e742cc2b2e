"""Configuration of the inference component (recipe ``DefaultConfiguration`` keys, camelCase)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator

from vla_edge.components.base import ConfigModel

SO101_JOINTS = ("shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper")
"""Joints of the SO-101 arm, in the order LeRobot's SO-101 datasets use for state and action."""


class InferenceConfig(ConfigModel):
    policy_path: str = ""
    """LeRobot policy directory. Empty: ``$VLA_EDGE_POLICY_PATH`` when set (the inference image sets it to
    the model baked in at /opt/vla-edge/model), else the (untrained) demo policy, created in the cache directory."""
    cache_dir: str = ""
    """Overrides ``$VLA_EDGE_CACHE`` / ``~/.cache/vla-edge`` (where the demo policy is created)."""
    device: str = Field(default="auto", pattern=r"^(auto|cpu|cuda(:\d+)?|mps)$")
    """Torch device. ``auto``: CUDA when the machine (or the container's GPU runtime) has it, else MPS,
    else the CPU; an explicit cuda/mps falls back to cpu (with a warning) when the machine has none."""
    dtype: Literal["float32", "float16", "bfloat16"] = "float32"
    """Inference precision. float16/bfloat16 run under torch.autocast where the device supports the type
    (CPU: bfloat16 only; float16 on CPU falls back to float32 with a warning). See vla_edge.policies.speed."""
    compile: bool = False
    """torch.compile the policy's per-inference module; a failed compilation falls back to eager (logged)."""
    warmup_inferences: int = Field(default=1, ge=0, le=100)
    """Inferences on synthetic observations at start, before reporting RUNNING (their latency is logged)."""
    cameras: list[str] = Field(default_factory=lambda: ["front"], min_length=1, max_length=8)
    """Camera names; camera ``x`` feeds the policy input ``observation.images.x``."""
    frame_dir: str = Field(default="/dev/shm/vla-edge", min_length=1)
    """Where the camera component's shared-memory frame rings are (mounted into the container)."""
    joint_names: list[str] = Field(default_factory=lambda: list(SO101_JOINTS), min_length=1, max_length=32)
    """Joint order of ``observation.state`` and of the published actions."""
    task: str = Field(default="", max_length=2000)
    """Initial language instruction; messages on the instruction topic replace it."""
    refill_fraction: float = Field(default=0.5, gt=0.0, le=1.0)
    """Publish a new chunk when less than this fraction of the current chunk's duration remains."""
    action_dt: float = Field(default=1.0 / 30.0, gt=0.0, le=1.0)
    """Seconds between consecutive actions of a chunk (the control rate the policy was trained at)."""
    max_observation_age_s: float = Field(default=1.0, gt=0.0, le=60.0)
    """Frames and joint states older than this are not used; inference waits for fresh ones."""
    torch_threads: int = Field(default=1, ge=1, le=64)
    """CPU threads torch may use. 1 by default: with other components on the same cores, extra
    intra-op threads barely lower the median and make the tail far worse (measured on 2 cores:
    p99 ~50 ms with 1 thread, 300-1600 ms with 2). Raise it on a device with idle cores."""

    @field_validator("cameras", "joint_names")
    @classmethod
    def _unique_names(cls, names: list[str]) -> list[str]:
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"names must be unique; duplicated: {duplicates}")
        if any(not name or len(name) > 64 for name in names):
            raise ValueError("names must be 1 to 64 characters")
        return names

    @field_validator("cameras")
    @classmethod
    def _camera_names(cls, names: list[str]) -> list[str]:
        bad = [name for name in names if not re.fullmatch(r"[A-Za-z0-9_.-]+", name)]
        if bad:
            raise ValueError(f"camera names may use letters, digits, '_', '.', '-' only (as camera topics do): {bad}")
        return names
