"""Real capture through OpenCV: USB/V4L2 devices, video files, RTSP/HTTP streams."""

from __future__ import annotations

import logging

import numpy as np

from vla_edge.cameras.base import Camera, CameraConfig
from vla_edge.errors import HardwareError

log = logging.getLogger(__name__)


class OpenCVCamera(Camera):
    def __init__(self, config: CameraConfig) -> None:
        super().__init__(config)
        self._capture = None

    def connect(self) -> None:
        import cv2

        source: int | str = int(self.config.source) if self.config.source.isdigit() else self.config.source
        capture = cv2.VideoCapture(source)
        if not capture.isOpened():
            raise HardwareError(
                f"camera {self.config.name!r}: cannot open source {self.config.source!r}; check the device "
                "index or path (`ls /dev/video*`), the file, or the stream URL"
            )
        capture.set(cv2.CAP_PROP_FRAME_WIDTH, self.config.width)
        capture.set(cv2.CAP_PROP_FRAME_HEIGHT, self.config.height)
        capture.set(cv2.CAP_PROP_FPS, self.config.fps)
        self._capture = capture

    def read(self) -> np.ndarray:
        import cv2

        if self._capture is None:
            raise HardwareError(f"camera {self.config.name!r} is not connected")
        ok, image = self._capture.read()
        if not ok or image is None:
            raise HardwareError(f"camera {self.config.name!r}: no frame from {self.config.source!r}")
        if image.shape[0] != self.config.height or image.shape[1] != self.config.width:
            image = cv2.resize(image, (self.config.width, self.config.height), interpolation=cv2.INTER_AREA)
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)

    def disconnect(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None
