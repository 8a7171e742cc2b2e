"""Real media for camera tests: video files and image folders written with OpenCV (importable as ``support.media``)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

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


def write_png_folder(folder: Path, frames: int = 5, size: tuple[int, int] = VIDEO_SIZE) -> Path:
    """PNGs ``000.png`` ... whose image ``i`` is the solid colour :func:`frame_colour_bgr` (i)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(frames):
        image = np.empty((size[1], size[0], 3), np.uint8)
        image[:] = frame_colour_bgr(i)
        assert cv2.imwrite(str(folder / f"{i:03d}.png"), image)
    return folder
