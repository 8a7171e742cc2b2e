"""A folder of images played in name order, looped, at the configured rate.

Images are read with ``cv2.imread`` one at a time as they are played (a folder may hold
more images than fit in memory). Files are taken in plain name order (``sorted``), so
number them with leading zeros (``frame_0001.png``); hidden files and files whose suffix
is not an image format OpenCV reads are ignored. The folder is listed again at each loop,
so images added or removed while playing are picked up.

An image that cannot be read (deleted, corrupt, unsupported) is **skipped** with a
warning (once per file per connection) and counted in :attr:`ImageFolderCamera.skipped`,
rather than failing the whole folder; when no image of the folder can be read in a whole
pass, or the folder is gone or empty, ``read()`` raises HardwareError. Images of a
different size than the first are resized like every frame.
"""

from __future__ import annotations

import logging
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
from vla_edge.cameras.frames import deliver
from vla_edge.errors import HardwareError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".jpe", ".bmp", ".dib", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm", ".pnm"}
)


class ImageFolderCamera(Camera):
    """The ``images`` source."""

    def __init__(self, config: CameraConfig) -> None:
        super().__init__(config)
        self.folder = Path(config.path or "").expanduser()
        self.skipped = 0
        """Images skipped because they could not be read, since construction."""
        self._files: list[Path] = []
        self._position = 0
        self._pending: np.ndarray | None = None
        self._warned: set[Path] = set()
        self._pacer = Pacer(config.fps)

    def connect(self) -> None:
        self.disconnect()
        self._warned.clear()
        self._files, self._position = self._scan(), 0
        first = self._next_image(allow_end=False)
        self._pending = first
        self._pacer.start()
        self._set_actual(
            Capability(first.shape[1], first.shape[0], None, backend="images", frame_count=len(self._files)),
            paced=True,
        )

    def read(self) -> np.ndarray:
        if self.actual is None:
            raise self._not_connected()
        image = self._pending if self._pending is not None else self._next_image(allow_end=True)
        self._pending = None
        frame = deliver(image, self.config)
        self._pacer.wait()
        return frame

    def disconnect(self) -> None:
        self._pending = None
        self.actual = None

    def _scan(self) -> list[Path]:
        try:
            files = sorted(
                p for p in self.folder.iterdir()
                if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".") and not p.is_dir()
            )
        except FileNotFoundError:
            raise HardwareError(
                f"camera {self.config.name!r}: image folder {self.folder} does not exist; check `path`"
            ) from None
        except NotADirectoryError:
            raise HardwareError(
                f"camera {self.config.name!r}: {self.folder} is a file, not a folder; use source: file for a video"
            ) from None
        except OSError as exc:
            raise HardwareError(f"camera {self.config.name!r}: cannot list image folder {self.folder}: {exc}") from exc
        if not files:
            raise HardwareError(
                f"camera {self.config.name!r}: no images in {self.folder} "
                f"(looked for {', '.join(sorted(IMAGE_SUFFIXES))}); add some or fix `path`"
            )
        return files

    def _next_image(self, *, allow_end: bool) -> np.ndarray:
        """The next readable image; skips unreadable ones, at most one whole pass."""
        failures = 0
        while True:
            if self._position >= len(self._files):
                if allow_end and not self.config.loop:
                    raise SourceExhausted(
                        f"camera {self.config.name!r}: image folder {self.folder} has ended (loop is false)"
                    )
                self._files, self._position = self._scan(), 0
            path = self._files[self._position]
            self._position += 1
            image = cv2.imread(str(path), cv2.IMREAD_COLOR) if path.is_file() else None
            if image is not None:
                return image
            failures += 1
            self.skipped += 1
            if path not in self._warned:
                self._warned.add(path)
                reason = "it was removed" if not path.exists() else "OpenCV cannot decode it (corrupt or unsupported)"
                log.warning(
                    "camera %r: skipping image %s: %s (%d skipped so far)", self.config.name, path, reason, self.skipped
                )
            if failures >= len(self._files):
                raise HardwareError(
                    f"camera {self.config.name!r}: none of the {len(self._files)} images in {self.folder} can be read; "
                    "check the files (corrupt, unsupported format or removed)"
                )
