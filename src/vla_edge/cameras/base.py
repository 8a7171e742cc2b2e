"""The camera interface, its configuration and its factory.

A camera is configured by :class:`CameraConfig` (recipe keys in camelCase) and opened with
:func:`make_camera`. Every implementation has the same three calls, as in LeRobot:

* ``connect()`` opens the source, reads its first frame (so a source that opens but never
  delivers fails here, not later), records what it really delivers in
  :attr:`Camera.actual` (a :class:`Capability`) and logs a WARNING when that differs
  from the configuration;
* ``read()`` returns the next frame as HxWx3 uint8 **RGB** of exactly the configured
  ``width`` x ``height`` (after rotation, flip and any resize). Files, image folders and
  the synthetic scene are paced at ``fps`` (never faster); live sources return frames as
  they arrive, dropping some when the source is faster than ``fps``;
* ``disconnect()`` releases the source; it is safe to call at any time, also after a
  failed ``connect()``, and ``connect()`` may be called again afterwards.

Every failure is a :class:`~vla_edge.errors.HardwareError` saying what to do; ``read()``
raises promptly (bounded by ``timeoutS`` for streams and devices) so the caller can reopen
the source with backoff.
"""

from __future__ import annotations

import abc
import logging
import re
import time
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, Self, get_args
from urllib.parse import urlsplit, urlunsplit

import numpy as np
from pydantic import Field, field_validator, model_validator

from vla_edge.components.base import ConfigModel
from vla_edge.errors import HardwareError

log = logging.getLogger(__name__)

SourceKind = Literal["synthetic", "device", "stream", "file", "images"]
SOURCES: tuple[str, ...] = get_args(SourceKind)
STREAM_SCHEMES = ("rtsp", "rtsps", "http", "https")
FlipMode = Literal["none", "horizontal", "vertical", "both"]

_DEVICE_PATH = re.compile(r"^/dev/(video\d+|v4l/by-(id|path)/[^/]+)$")
_FOURCC = re.compile(r"^[\x20-\x7e]{4}$")
# Which optional keys each source uses; any other one given is a mistake worth naming.
_USES: dict[str, tuple[str, ...]] = {
    "synthetic": (),
    "device": ("device", "fourcc"),
    "stream": ("url",),
    "file": ("path", "loop"),
    "images": ("path", "loop"),
}


class SourceExhausted(HardwareError):
    """A ``file`` or ``images`` source configured with ``loop: false`` has played to its end."""


class CameraConfig(ConfigModel):
    """One camera. ``width``/``height`` are the size of the frames delivered (after rotation)."""

    name: str = Field(default="front", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    """Camera name; the policy sees it as ``observation.images.<name>``."""
    source: SourceKind = "synthetic"
    device: int | str | None = None
    """``device`` source: an index (0 is /dev/video0) or a path /dev/videoN, /dev/v4l/by-id/..., /dev/v4l/by-path/..."""
    url: str | None = None
    """``stream`` source: rtsp://, rtsps://, http:// or https:// URL (credentials are redacted in logs)."""
    path: str | None = None
    """``file`` source: a video file; ``images`` source: a folder of images played in name order."""
    loop: bool = True
    """``file``/``images``: start again at the end (else :class:`SourceExhausted` is raised)."""
    width: int = Field(default=160, gt=0, le=4096)
    height: int = Field(default=120, gt=0, le=4096)
    fps: float = Field(default=30.0, gt=0, le=240)
    fourcc: str | None = None
    """``device``: pixel format to ask for, 4 characters such as MJPG or YUYV."""
    rotation: Literal[0, 90, 180, 270] = 0
    """Clockwise rotation in degrees, applied before ``flip``."""
    flip: FlipMode = "none"
    """Mirror of the rotated image: horizontal (left-right), vertical (up-down) or both."""
    timeout_s: float = Field(default=5.0, gt=0, le=60)
    """Longest wait to open a stream or for one frame of a stream or device."""

    @property
    def image_key(self) -> str:
        """The LeRobot observation key of this camera."""
        return f"observation.images.{self.name}"

    @field_validator("source", mode="before")
    @classmethod
    def _known_source(cls, value: Any) -> Any:
        if isinstance(value, str) and value not in SOURCES:
            hint = ""
            if value.isdigit() or value.startswith("/dev/"):
                hint = f" (for a camera device write source: device, device: {value})"
            elif "://" in value:
                hint = f" (for a stream write source: stream, url: {value})"
            elif "/" in value or "." in value:
                hint = f" (for a video file write source: file, path: {value}; for a folder of images, source: images)"
            raise ValueError(f"unknown camera source {value!r}; valid sources: {', '.join(SOURCES)}{hint}")
        return value

    @field_validator("device", mode="before")
    @classmethod
    def _device(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        if isinstance(value, bool):  # pydantic reports ValueError, not TypeError, as a validation error
            raise ValueError("device must be an index such as 0 or a path such as /dev/video0")  # noqa: TRY004
        if isinstance(value, int) and not 0 <= value <= 255:
            raise ValueError(f"device index {value} is out of range 0..255")
        if isinstance(value, str) and not _DEVICE_PATH.match(value):
            raise ValueError(
                f"device {value!r} is not a camera device: use an index such as 0 or a path /dev/videoN, "
                "/dev/v4l/by-id/... or /dev/v4l/by-path/... (see `vla-edge camera list`)"
            )
        return value

    @field_validator("fourcc")
    @classmethod
    def _fourcc(cls, value: str | None) -> str | None:
        if value is not None and not _FOURCC.match(value):
            raise ValueError(f"fourcc must be exactly 4 printable characters such as MJPG or YUYV, got {value!r}")
        return value

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme.lower() not in STREAM_SCHEMES or not parts.hostname:
            raise ValueError(
                f"url {redact_url(value)!r} must start with {', '.join(s + '://' for s in STREAM_SCHEMES)} "
                "and name a host"
            )
        return value

    @field_validator("path")
    @classmethod
    def _path(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("path must not be empty")
        return value

    @model_validator(mode="after")
    def _source_fields(self) -> CameraConfig:
        needs = {
            "device": ("device", "an index such as 0 or a path such as /dev/video0 (see `vla-edge camera list`)"),
            "stream": ("url", f"a URL starting with {', '.join(s + '://' for s in STREAM_SCHEMES)}"),
            "file": ("path", "the video file to play"),
            "images": ("path", "the folder of images to play"),
        }
        if self.source in needs:
            key, what = needs[self.source]
            if getattr(self, key) is None:
                raise ValueError(f"camera {self.name!r}: source {self.source!r} needs {key!r}: {what}")
        for key in ("device", "url", "path", "fourcc", "loop"):
            if key in self.model_fields_set and key not in _USES[self.source]:
                users = [s for s, keys in _USES.items() if key in keys]
                raise ValueError(
                    f"camera {self.name!r}: {key!r} is only used with source {' or '.join(map(repr, users))}, "
                    f"not {self.source!r}; remove it"
                )
        return self

    def describe_source(self) -> str:
        """Where the frames come from, for messages (stream credentials redacted)."""
        if self.source == "device":
            return f"device /dev/video{self.device}" if isinstance(self.device, int) else f"device {self.device}"
        if self.source == "stream":
            return f"stream {redact_url(self.url or '')}"
        if self.source == "file":
            return f"file {self.path}"
        if self.source == "images":
            return f"image folder {self.path}"
        return "synthetic scene"


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (for logs and error messages)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{netloc}"))


@dataclass(frozen=True)
class Capability:
    """What a source really delivers, read back after opening it (before rotation and resize)."""

    width: int
    height: int
    fps: float | None
    """Native rate: set-and-read-back for devices, recorded rate for files; None when unknown."""
    fourcc: str | None = None
    """Pixel format (devices) or codec (files, streams), when the backend says."""
    backend: str = ""
    """``V4L2``, ``FFMPEG``, ``images``, ``synthetic``..."""
    frame_count: int | None = None
    """Frames in a file (as its container declares) or images in a folder."""

    def describe(self) -> str:
        text = f"{self.width}x{self.height}"
        if self.fps:
            text += f" @ {self.fps:g} fps"
        if self.fourcc:
            text += f" ({self.fourcc})"
        return text


def oriented_size(width: int, height: int, rotation: int) -> tuple[int, int]:
    """Size of a ``width`` x ``height`` image after rotating it by ``rotation`` degrees."""
    return (height, width) if rotation in (90, 270) else (width, height)


def mismatch_warning(config: CameraConfig, actual: Capability, *, paced: bool) -> str | None:
    """The start-up warning when ``actual`` differs from ``config``, or None when it does not.

    ``paced`` sources (files, folders) play at the configured rate whatever they were
    recorded at; live sources deliver at their own rate, dropping frames above ``fps``.
    """
    width, height = oriented_size(actual.width, actual.height, config.rotation)
    consequences = []
    if (width, height) != (config.width, config.height):
        resized = "frames will be resized"
        if abs(width / height - config.width / config.height) > 0.01 * config.width / config.height:
            resized += " (the aspect ratio changes: the image is stretched)"
        consequences.append(resized)
    if actual.fps and paced and abs(actual.fps - config.fps) > 0.01 * config.fps:
        consequences.append(f"it plays at {config.fps:g} fps, {config.fps / actual.fps:.2g}x its recorded rate")
    elif actual.fps and not paced and actual.fps < 0.99 * config.fps:
        consequences.append(f"rate will be {actual.fps:g} fps")
    elif actual.fps and not paced and actual.fps > 1.05 * config.fps:
        consequences.append(f"frames will be dropped to keep {config.fps:g} fps")
    if config.fourcc and actual.fourcc and actual.fourcc != config.fourcc:
        consequences.append(f"pixel format is {actual.fourcc}, not the requested {config.fourcc}")
    if not consequences:
        return None
    delivered = actual.describe()
    if config.rotation in (90, 270):
        delivered += f", {width}x{height} after rotation {config.rotation}"
    return (
        f"camera {config.name!r} delivers {delivered}; configured {config.width}x{config.height} "
        f"@ {config.fps:g} fps: {', '.join(consequences)}"
    )


class Pacer:
    """Releases one frame per period: never faster than ``fps`` on average, no burst after a stall."""

    def __init__(self, fps: float) -> None:
        self.period = 1.0 / fps
        self._due = time.monotonic()

    def start(self) -> None:
        self._due = time.monotonic()

    def is_due(self, now: float, early_s: float = 0.0) -> bool:
        return now >= self._due - early_s

    def advance(self, now: float) -> None:
        """Schedule the next frame after one released at ``now``."""
        if now - self._due > self.period:
            self._due = now + self.period  # late by more than a frame: restart, do not catch up
        else:
            self._due += self.period

    def wait(self) -> None:
        """Sleep until the next frame is due, then schedule the one after."""
        delay = self._due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        self.advance(time.monotonic())


class Camera(abc.ABC):
    """One image source. ``read`` blocks until the next frame and returns HxWx3 uint8 RGB."""

    def __init__(self, config: CameraConfig) -> None:
        self.config = config
        self.actual: Capability | None = None
        """What the source delivers; set by :meth:`connect`."""

    @property
    def is_connected(self) -> bool:
        return self.actual is not None

    @abc.abstractmethod
    def connect(self) -> None:
        """Open the source and check it delivers; raises HardwareError."""

    @abc.abstractmethod
    def read(self) -> np.ndarray:
        """The next frame, ``(height, width, 3)`` uint8 RGB; raises HardwareError."""

    @abc.abstractmethod
    def disconnect(self) -> None:
        """Release the source (idempotent)."""

    def _set_actual(self, actual: Capability, *, paced: bool) -> None:
        self.actual = actual
        warning = mismatch_warning(self.config, actual, paced=paced)
        if warning:
            log.warning("%s", warning)
        else:
            log.info("camera %r: %s delivers %s", self.config.name, self.config.describe_source(), actual.describe())

    def _not_connected(self) -> HardwareError:
        return HardwareError(f"camera {self.config.name!r} is not connected; call connect() first")

    def __enter__(self) -> Self:
        self.connect()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.disconnect()


def make_camera(config: CameraConfig) -> Camera:
    """The implementation for ``config.source`` (not connected yet)."""
    if config.source == "synthetic":
        from vla_edge.cameras.synthetic import SyntheticCamera

        return SyntheticCamera(config)
    if config.source == "images":
        from vla_edge.cameras.images import ImageFolderCamera

        return ImageFolderCamera(config)
    from vla_edge.cameras.opencv import OpenCVCamera

    return OpenCVCamera(config)
