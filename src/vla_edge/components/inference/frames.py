"""The newest frame of each camera, read from the camera's shared-memory ring when needed.

FrameReady messages only say that a camera is alive and where its ring is; pixels are
copied out of shared memory at inference time, so the policy always sees the newest
frame and nothing is copied for frames the policy never uses.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vla_edge import messages
from vla_edge.cameras.ring import FrameRingReader
from vla_edge.components.base import Counters
from vla_edge.errors import FrameUnavailable, VlaEdgeError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CameraFrame:
    seq: int
    t_capture: float
    image: np.ndarray


class LatestFrames:
    def __init__(self, cameras: list[str], frame_dir: Path, counters: Counters) -> None:
        self.cameras = list(cameras)
        self.frame_dir = frame_dir.resolve()
        self.counters = counters
        self._lock = threading.Lock()
        self._announced: dict[str, messages.FrameReady] = {}
        self._readers: dict[str, FrameRingReader] = {}

    def announce(self, ready: messages.FrameReady) -> bool:
        """Record a FrameReady; False (and counted) when its ring is outside the frame directory."""
        segment = Path(ready.segment).resolve()
        if self.frame_dir not in segment.parents:
            self.counters.add("rejected.invalid")
            log.warning("frame ring %s of camera %r is outside %s; ignored", segment, ready.camera, self.frame_dir)
            return False
        with self._lock:
            self._announced[ready.camera] = ready
        return True

    def announced(self, camera: str) -> messages.FrameReady | None:
        with self._lock:
            return self._announced.get(camera)

    def read(self, camera: str) -> CameraFrame | None:
        """Newest complete frame of ``camera`` from its ring, or None if it has none (yet)."""
        ready = self.announced(camera)
        if ready is None:
            return None
        reader = self._readers.get(camera)
        try:
            if reader is None or str(reader.path) != ready.segment:
                if reader is not None:
                    reader.close()
                reader = self._readers[camera] = FrameRingReader.open(Path(ready.segment))
            frame = reader.latest()
        except (VlaEdgeError, OSError, ValueError) as exc:
            self.counters.add(f"frame_read_errors.{camera}")
            log.warning("cannot read camera %r from %s: %s", camera, ready.segment, exc)
            self._readers.pop(camera, None)
            return None
        if frame is None:
            return None
        return CameraFrame(frame.seq, frame.t_capture, frame.image)

    def read_near(self, camera: str, t: float, newer: CameraFrame) -> CameraFrame:
        """The frame of ``camera`` captured closest to ``t``, walking back in its ring from ``newer``.

        Stops at the first frame captured at or before ``t``, or where the ring no longer holds
        older frames (then the oldest reached is returned: the best there is).
        """
        reader = self._readers.get(camera)
        best, seq = newer, newer.seq
        while reader is not None and best.t_capture > t and seq > 1:
            seq -= 1
            try:
                frame = reader.read(seq)
            except FrameUnavailable:  # overwritten by newer frames, or the ring was recreated
                break
            except (VlaEdgeError, OSError, ValueError) as exc:
                self.counters.add(f"frame_read_errors.{camera}")
                log.warning("cannot read frame %d of camera %r: %s", seq, camera, exc)
                break
            candidate = CameraFrame(frame.seq, frame.t_capture, frame.image)
            if abs(candidate.t_capture - t) <= abs(best.t_capture - t):
                best = candidate
            if candidate.t_capture <= t:
                break
        return best

    def reader_counters(self) -> dict[str, int]:
        figures: dict[str, int] = {}
        for camera, reader in self._readers.items():
            for key in ("overwritten", "skipped", "retries"):
                figures[f"ring.{key}.{camera}"] = int(getattr(reader, key, 0))
        return figures

    def close(self) -> None:
        for reader in self._readers.values():
            reader.close()
        self._readers.clear()
