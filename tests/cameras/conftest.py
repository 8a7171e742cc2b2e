"""Real media for the camera tests: video files and image folders written with OpenCV."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

VIDEO_SIZE = (64, 48)  # width, height
VIDEO_FPS = 15.0
STEP = 20  # red level step between frames: survives MJPG compression easily


def frame_colour_bgr(index: int) -> tuple[int, int, int]:
    """Frame ``index`` of a test video is this solid colour (BGR): red = 20 * index."""
    return (128, 255 - STEP * index, STEP * index)


def colour_index(image_rgb: np.ndarray) -> int:
    """The frame index a delivered RGB frame of a test video carries (from its mean red)."""
    return round(float(image_rgb[..., 0].mean()) / STEP)


def write_video(path: Path, frames: int = 10, size: tuple[int, int] = VIDEO_SIZE, fps: float = VIDEO_FPS) -> Path:
    """An MJPG .avi whose frame ``i`` is the solid colour :func:`frame_colour_bgr` (i)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    assert writer.isOpened(), "this OpenCV build cannot write MJPG .avi"
    try:
        for i in range(frames):
            image = np.empty((size[1], size[0], 3), np.uint8)
            image[:] = frame_colour_bgr(i)
            writer.write(image)
    finally:
        writer.release()
    return path


@pytest.fixture
def video(tmp_path: Path) -> Path:
    return write_video(tmp_path / "clip.avi")


@pytest.fixture
def make_video() -> Callable[..., Path]:
    return write_video


@pytest.fixture
def colour_of() -> Callable[[np.ndarray], int]:
    return colour_index
