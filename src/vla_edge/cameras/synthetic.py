"""A synthetic scene: coloured blocks moving over a gradient, paced at the configured rate.

It exists so the whole suite runs with no camera. Each frame is different (blocks move
with time) and carries its frame number in a corner stripe, so a consumer can tell
frames apart and tests can check ordering from the pixels alone (:func:`frame_number`;
the stripe is readable when ``rotation`` is 0 and ``flip`` is none).
"""

from __future__ import annotations

import math

import numpy as np

from vla_edge.cameras.base import Camera, CameraConfig, Capability, Pacer, oriented_size

_COLOURS = np.array([[220, 40, 40], [40, 200, 60], [50, 90, 230], [230, 200, 40]], dtype=np.uint8)


class SyntheticCamera(Camera):
    def __init__(self, config: CameraConfig) -> None:
        super().__init__(config)
        self._pacer = Pacer(config.fps)
        self._count = 0
        # The scene is drawn at the size before rotation, so rotation and flip behave as for real sources.
        w, h = oriented_size(config.width, config.height, config.rotation)
        ramp = np.linspace(30, 90, w, dtype=np.float32)
        self._background = np.broadcast_to(ramp[None, :, None], (h, w, 3)).astype(np.uint8)

    def connect(self) -> None:
        self._count = 0
        self._pacer.start()
        w, h = oriented_size(self.config.width, self.config.height, self.config.rotation)
        self._set_actual(Capability(w, h, self.config.fps, backend="synthetic"), paced=True)

    def read(self) -> np.ndarray:
        if self.actual is None:
            raise self._not_connected()
        self._pacer.wait()
        self._count += 1
        return self.render(self._count, self._count * self._pacer.period)

    def render(self, index: int, t: float) -> np.ndarray:
        """The frame for ``index`` at scene time ``t`` (pure: same inputs, same pixels)."""
        h, w = self._background.shape[:2]
        image = self._background.copy()
        size = max(4, min(h, w) // 5)
        for k, colour in enumerate(_COLOURS):
            phase = t * (0.6 + 0.25 * k) + k * math.pi / 2
            cx = int((0.5 + 0.38 * math.sin(phase)) * (w - size))
            cy = int((0.5 + 0.38 * math.cos(phase * 1.3)) * (h - size))
            image[cy : cy + size, cx : cx + size] = colour
        bits = np.array([(index >> b) & 1 for b in range(min(32, w // 2))], dtype=np.uint8) * 255
        image[0, : bits.size * 2] = np.repeat(bits, 2)[:, None]
        if self.config.rotation or self.config.flip != "none":
            from vla_edge.cameras.frames import orient

            image = np.ascontiguousarray(orient(image, self.config.rotation, self.config.flip))
        return image

    def disconnect(self) -> None:
        self._count = 0
        self.actual = None


def frame_number(image: np.ndarray) -> int:
    """Decode the frame number :meth:`SyntheticCamera.render` wrote into the first row."""
    bits = image[0, 0 : min(64, image.shape[1]) : 2, 0] > 127
    return sum(1 << b for b, bit in enumerate(bits) if bit)
