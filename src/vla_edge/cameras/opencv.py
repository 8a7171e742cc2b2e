"""Capture through OpenCV: V4L2/USB devices, RTSP/HTTP streams and video files.

* ``device``: opened with ``CAP_V4L2`` on Linux (the platform default elsewhere); the
  pixel format, size and rate are requested in that order and read back. OpenCV's V4L2
  backend waits ``OPENCV_VIDEOIO_V4L_SELECT_TIMEOUT`` seconds for a frame (10 by
  default); unless set already, it is set to ``timeoutS`` (rounded up) before the first
  device is opened. OpenCV reads it once per process.
* ``stream``: ``CAP_FFMPEG`` with ``CAP_PROP_OPEN_TIMEOUT_MSEC`` and
  ``CAP_PROP_READ_TIMEOUT_MSEC`` set to ``timeoutS``.
* ``file``: ``CAP_FFMPEG``; frames are delivered one per period at the configured ``fps``
  (whatever rate the file was recorded at) and the file is reopened at its end when
  ``loop`` is true. The file is checked on every read: deleted, truncated or replaced
  while playing is a HardwareError at once (reconnecting plays the new content).
  A file that ends before the frame count its container declares is played as far as
  it decodes, with a warning that it may be truncated.

Live sources (device, stream) return frames as they arrive; when the source's rate is
known and above ``fps``, frames arriving early are grabbed and dropped undecoded, so
the delivered frame is always the newest and the rate is ``fps``.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from vla_edge.cameras.base import (
    Camera,
    CameraConfig,
    Capability,
    Pacer,
    SourceExhausted,
)
from vla_edge.cameras.frames import deliver, source_size
from vla_edge.errors import HardwareError

log = logging.getLogger(__name__)

_V4L_TIMEOUT_ENV = "OPENCV_VIDEOIO_V4L_SELECT_TIMEOUT"
_MAX_PLAUSIBLE_FPS = 1000.0


def fourcc_text(code: float) -> str | None:
    """A CAP_PROP_FOURCC value as 4 characters, or None when it is not a readable code."""
    value = int(code)
    if value <= 0:
        return None
    text = value.to_bytes(4, "little", signed=False).decode("latin-1") if value < 1 << 32 else ""
    return text if len(text) == 4 and text.isprintable() and text.strip() else None


def _stat_key(path: Path) -> tuple[int, int, int, int]:
    st = path.stat()
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


class OpenCVCamera(Camera):
    """``device``, ``stream`` and ``file`` sources."""

    def __init__(self, config: CameraConfig) -> None:
        super().__init__(config)
        self._capture: cv2.VideoCapture | None = None
        self._pending: np.ndarray | None = None
        self._pacer = Pacer(config.fps)
        self._early_s: float | None = None  # live sources faster than fps: how early a frame may be taken
        self._file: Path | None = None
        self._file_key: tuple[int, int, int, int] | None = None
        self._played = 0
        self._truncation_warned = False

    # ------------------------------------------------------------------ connect
    def connect(self) -> None:
        self.disconnect()
        source = self.config.source
        if source == "device":
            capture, backend = self._open_device(), "V4L2" if sys.platform.startswith("linux") else "default"
        elif source == "stream":
            capture, backend = self._open_ffmpeg(self.config.url or ""), "FFMPEG"
        else:
            capture, backend = self._open_file(), "FFMPEG"
        self._capture = capture
        try:
            ok, first = capture.read()
            if not ok or first is None:
                raise HardwareError(
                    f"camera {self.config.name!r}: {self._what()} opened but gave no frame; {self._advice()}"
                )
            fps = capture.get(cv2.CAP_PROP_FPS)
            count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if source == "file" else 0
            actual = Capability(
                width=first.shape[1],
                height=first.shape[0],
                fps=fps if 0 < fps <= _MAX_PLAUSIBLE_FPS else None,
                fourcc=fourcc_text(capture.get(cv2.CAP_PROP_FOURCC)),
                backend=backend,
                frame_count=count if count > 0 else None,
            )
        except BaseException:
            self.disconnect()
            raise
        self._pending, self._played = first, 1
        live = source != "file"
        self._early_s = 0.5 / actual.fps if live and actual.fps and actual.fps > 1.05 * self.config.fps else None
        self._pacer.start()
        self._set_actual(actual, paced=not live)

    def _open_device(self) -> cv2.VideoCapture:
        device = self.config.device
        linux = sys.platform.startswith("linux")
        target: int | str = device if isinstance(device, int) else str(device)
        if linux:
            node = Path(f"/dev/video{device}") if isinstance(device, int) else Path(str(device))
            if not node.exists():
                raise HardwareError(
                    f"camera {self.config.name!r}: no device {node}; plug the camera in and check "
                    "`vla-edge camera list` (USB cameras can change numbers: prefer /dev/v4l/by-id/...)"
                )
            if not os.access(node, os.R_OK | os.W_OK):
                raise HardwareError(
                    f"camera {self.config.name!r}: permission denied on {node}; add the user that runs the "
                    "component (ggc_user under Greengrass) to the 'video' group"
                )
            if not isinstance(device, int):
                target = os.path.realpath(node)  # by-id/by-path links point at /dev/videoN
            os.environ.setdefault(_V4L_TIMEOUT_ENV, str(max(1, math.ceil(self.config.timeout_s))))
        capture = cv2.VideoCapture(target, cv2.CAP_V4L2 if linux else cv2.CAP_ANY)
        if not capture.isOpened():
            capture.release()
            raise HardwareError(
                f"camera {self.config.name!r}: cannot open {self._what()}; it may be in use by another process "
                "(`fuser /dev/video*`) or not be a capture node (see `vla-edge camera list`)"
            )
        width, height = source_size(self.config)
        if self.config.fourcc:
            capture.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter.fourcc(*self.config.fourcc))
        capture.set(cv2.CAP_PROP_FRAME_WIDTH, width)
        capture.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
        capture.set(cv2.CAP_PROP_FPS, self.config.fps)
        return capture

    def _open_ffmpeg(self, target: str) -> cv2.VideoCapture:
        ms = int(self.config.timeout_s * 1000)
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms]
        capture = cv2.VideoCapture(target, cv2.CAP_FFMPEG, params)
        if not capture.isOpened():
            capture.release()
            if self.config.source == "stream":
                raise HardwareError(
                    f"camera {self.config.name!r}: cannot open {self._what()} within {self.config.timeout_s:g} s; "
                    "check the camera is powered and reachable from this device, and the URL path and credentials"
                )
            raise HardwareError(
                f"camera {self.config.name!r}: cannot decode {self._what()}: not a video OpenCV/FFmpeg can read, "
                "or truncated; copy the file again or convert it (e.g. ffmpeg -i in -c:v mjpeg out.avi)"
            )
        return capture

    def _open_file(self) -> cv2.VideoCapture:
        path = Path(self.config.path or "").expanduser()
        if not path.exists():
            raise HardwareError(f"camera {self.config.name!r}: video file {path} does not exist; check `path`")
        if path.is_dir():
            raise HardwareError(
                f"camera {self.config.name!r}: {path} is a folder; use source: images for a folder of images"
            )
        if not os.access(path, os.R_OK):
            raise HardwareError(f"camera {self.config.name!r}: cannot read {path}: permission denied")
        try:
            key = _stat_key(path)
        except OSError as exc:
            raise HardwareError(f"camera {self.config.name!r}: cannot read video file {path}: {exc}") from exc
        if key[2] == 0:
            raise HardwareError(f"camera {self.config.name!r}: video file {path} is empty; copy it again")
        capture = self._open_ffmpeg(str(path))
        self._file, self._file_key = path, key
        return capture

    # --------------------------------------------------------------------- read
    def read(self) -> np.ndarray:
        if self._capture is None:
            raise self._not_connected()
        if self.config.source == "file":
            self._check_file()
            frame = self._pending if self._pending is not None else self._next_file_frame()
            self._pending = None
            image = deliver(frame, self.config)
            self._pacer.wait()
            return image
        frame = self._pending if self._pending is not None else self._next_live_frame()
        self._pending = None
        return deliver(frame, self.config)

    def _next_live_frame(self) -> np.ndarray:
        capture = self._capture
        assert capture is not None
        while True:
            if not capture.grab():
                raise HardwareError(f"camera {self.config.name!r}: no frame from {self._what()}; {self._advice()}")
            now = time.monotonic()
            if self._early_s is None or self._pacer.is_due(now, self._early_s):
                break  # else: the source is faster than fps; drop this frame undecoded
        self._pacer.advance(now)
        ok, frame = capture.retrieve()
        if not ok or frame is None:
            raise HardwareError(f"camera {self.config.name!r}: {self._what()} sent a frame that does not decode")
        return frame

    def _next_file_frame(self) -> np.ndarray:
        capture = self._capture
        assert capture is not None
        ok, frame = capture.read()
        if ok and frame is not None:
            self._played += 1
            return frame
        self._check_file()
        declared = self.actual.frame_count if self.actual else None
        if declared and self._played < declared - 1 and not self._truncation_warned:
            self._truncation_warned = True
            log.warning(
                "camera %r: %s ended after %d of the %d frames its header declares; it may be truncated "
                "(playing what decodes)", self.config.name, self._what(), self._played, declared,
            )
        if not self.config.loop:
            raise SourceExhausted(f"camera {self.config.name!r}: {self._what()} has ended (loop is false)")
        capture.release()
        self._capture = None  # a failed reopen leaves the camera disconnected, not holding a released capture
        self._capture = capture = self._open_ffmpeg(str(self._file))
        ok, frame = capture.read()
        if not ok or frame is None:
            raise HardwareError(
                f"camera {self.config.name!r}: {self._what()} gave no frame when reopened; {self._advice()}"
            )
        self._played = 1
        return frame

    def _check_file(self) -> None:
        assert self._file is not None
        try:
            key = _stat_key(self._file)
        except FileNotFoundError:
            raise HardwareError(
                f"camera {self.config.name!r}: video file {self._file} was deleted while playing; restore it"
            ) from None
        except OSError as exc:
            raise HardwareError(f"camera {self.config.name!r}: cannot check video file {self._file}: {exc}") from exc
        if key != self._file_key:
            change = "truncated" if key[2] < (self._file_key or key)[2] else "replaced or rewritten"
            raise HardwareError(
                f"camera {self.config.name!r}: video file {self._file} was {change} while playing; "
                "reconnecting plays the file as it is now"
            )

    # --------------------------------------------------------------- disconnect
    def disconnect(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None
        self._pending = None
        self.actual = None

    def _what(self) -> str:
        return self.config.describe_source()

    def _advice(self) -> str:
        if self.config.source == "device":
            return "was it unplugged? check the cable and `dmesg | tail`"
        if self.config.source == "stream":
            return f"the stream stopped or sent nothing for {self.config.timeout_s:g} s; check the camera and network"
        return "the file may be corrupt or truncated; copy it again"
