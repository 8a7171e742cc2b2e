"""Configuration of the camera component (recipe ``DefaultConfiguration`` keys, camelCase)."""

from __future__ import annotations

from pydantic import Field, field_validator

from vla_edge.cameras.base import CameraConfig
from vla_edge.components.base import ConfigModel

DEFAULT_FRAME_DIR = "/dev/shm/vla-edge"


class CameraComponentConfig(ConfigModel):
    cameras: list[CameraConfig] = Field(default_factory=lambda: [CameraConfig()], min_length=1, max_length=8)
    frame_dir: str = Field(default=DEFAULT_FRAME_DIR, min_length=1)
    """Directory of the shared-memory frame rings (a tmpfs); the inference container mounts it."""
    ring_slots: int = Field(default=8, ge=2, le=256)
    """Frames kept per camera; a reader that falls further behind sees 'overwritten'."""
    reconnect_backoff_s: float = Field(default=1.0, gt=0, le=60)
    """First wait before reopening a failed source; doubles up to 30 s."""
    snapshot_min_interval_s: float = Field(default=1.0, ge=0.1, le=3600)
    """At most one debug snapshot per camera per this many seconds."""

    @field_validator("cameras")
    @classmethod
    def _unique_names(cls, cameras: list[CameraConfig]) -> list[CameraConfig]:
        names = [camera.name for camera in cameras]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"camera names must be unique; duplicated: {duplicates}")
        return cameras
