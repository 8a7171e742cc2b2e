"""Turning a decoded frame into the delivered one: orientation, size, RGB channel order."""

from __future__ import annotations

import cv2
import numpy as np

from vla_edge.cameras.base import CameraConfig, oriented_size

_ROTATE = {90: cv2.ROTATE_90_CLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_COUNTERCLOCKWISE}
_FLIP = {"horizontal": 1, "vertical": 0, "both": -1}


def source_size(config: CameraConfig) -> tuple[int, int]:
    """The (width, height) to ask a source for so that, once rotated, it is the configured size."""
    return oriented_size(config.width, config.height, config.rotation)


def orient(image: np.ndarray, rotation: int, flip: str) -> np.ndarray:
    """Rotate clockwise by ``rotation`` degrees, then mirror the rotated image as ``flip`` says."""
    if rotation:
        image = cv2.rotate(image, _ROTATE[rotation])
    if flip != "none":
        image = cv2.flip(image, _FLIP[flip])
    return image


def deliver(image_bgr: np.ndarray, config: CameraConfig) -> np.ndarray:
    """A decoded OpenCV image (BGR, BGRA or grey) as the configured HxWx3 uint8 RGB frame."""
    if image_bgr.dtype != np.uint8:
        raise ValueError(f"expected an 8-bit image, got {image_bgr.dtype}")
    image = orient(image_bgr, config.rotation, config.flip)
    height, width = image.shape[:2]
    if (width, height) != (config.width, config.height):
        shrink = width * height > config.width * config.height
        image = cv2.resize(
            image, (config.width, config.height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
        )
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
