"""Configuration of the camera component (recipe ``DefaultConfiguration`` keys, camelCase)."""

from __future__ import annotations

from pydantic import Field, field_validator

from vla_edge.cameras.base import CameraConfig
from vla_edge.components.base import ConfigModel


class CameraComponentConfig(ConfigModel):
    cameras: list[CameraConfig] = Field(default_factory=lambda: [CameraConfig()], min_length=1, max_length=8)
    reconnect_backoff_s: float = Field(default=1.0, gt=0, le=60)
    """First wait before reopening a failed source; doubles up to 30 s."""

    @field_validator("cameras")
    @classmethod
    def _unique_names(cls, cameras: list[CameraConfig]) -> list[CameraConfig]:
        names = [camera.name for camera in cameras]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"camera names must be unique; duplicated: {duplicates}")
        return cameras
