"""The camera interface and its factory.

``source`` in the configuration picks the implementation: ``synthetic`` for the built-in
moving-blocks scene (no hardware), anything else goes to OpenCV (a device index such
as ``"0"``, a ``/dev/video*`` path, a video file, or an RTSP/HTTP URL).
"""

from __future__ import annotations

import abc

import numpy as np
from pydantic import Field

from vla_edge.components.base import ConfigModel


class CameraConfig(ConfigModel):
    name: str = Field(default="front", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    source: str = Field(default="synthetic", min_length=1)
    width: int = Field(default=160, gt=0, le=4096)
    height: int = Field(default=120, gt=0, le=4096)
    fps: float = Field(default=30.0, gt=0, le=240)


class Camera(abc.ABC):
    """One image source. ``read`` blocks until the next frame and returns HxWx3 uint8 RGB."""

    def __init__(self, config: CameraConfig) -> None:
        self.config = config

    @abc.abstractmethod
    def connect(self) -> None: ...

    @abc.abstractmethod
    def read(self) -> np.ndarray: ...

    @abc.abstractmethod
    def disconnect(self) -> None: ...


def make_camera(config: CameraConfig) -> Camera:
    if config.source == "synthetic":
        from vla_edge.cameras.synthetic import SyntheticCamera

        return SyntheticCamera(config)
    from vla_edge.cameras.opencv import OpenCVCamera

    return OpenCVCamera(config)
