"""One camera on its own thread: capture, write into the shared-memory ring, announce.

The worker never waits for a consumer: a frame goes into the ring (overwriting the
oldest slot) and a small FrameReady goes on the bus. A source that fails is closed
and reopened with exponential backoff; the worker reports the problem instead of
exiting, so a pulled USB cable never turns into a crash loop.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from vla_edge import messages
from vla_edge.cameras.base import CameraConfig, SourceExhausted, make_camera
from vla_edge.cameras.ring import FrameRing
from vla_edge.components.base import Counters
from vla_edge.errors import BusError, HardwareError, VlaEdgeError

MAX_BACKOFF_S = 30.0


class CameraWorker:
    def __init__(
        self,
        config: CameraConfig,
        frame_dir: Path,
        ring_slots: int,
        backoff_s: float,
        publish: Callable[[messages.Message], None],
        counters: Counters,
        log: logging.Logger,
    ) -> None:
        self.config = config
        self.frame_dir = frame_dir
        self.ring_slots = ring_slots
        self.backoff_s = backoff_s
        self._publish = publish
        self.counters = counters
        self.log = log
        self.problem: str | None = None
        self.finished = False
        """A non-looping file or image folder reached its end: not an error, nothing more to capture."""
        self._latest: tuple[int, float, np.ndarray] | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"camera-{config.name}", daemon=True)
        self._rate_window: list[float] = []

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def latest(self) -> tuple[int, float, np.ndarray] | None:
        """(seq, capture time, image) of the newest frame, for snapshots."""
        with self._lock:
            return self._latest

    def fps(self) -> float:
        with self._lock:
            window = list(self._rate_window)
        if len(window) < 2 or window[-1] - window[0] <= 0:
            return 0.0
        return (len(window) - 1) / (window[-1] - window[0])

    def _run(self) -> None:
        ring = self._create_ring()
        if ring is None:
            return
        name, backoff = self.config.name, self.backoff_s
        try:
            while not self._stop.is_set():
                camera = make_camera(self.config)
                try:
                    camera.connect()
                    self._set_problem(None)
                    backoff = self.backoff_s
                    while not self._stop.is_set():
                        self._deliver(ring, camera.read())
                except SourceExhausted as exc:
                    self.log.info("%s; camera %r stops (set loop: true to replay)", exc, name)
                    self.finished = True
                    return
                except HardwareError as exc:
                    self.counters.add(f"camera_errors.{name}")
                    self._set_problem(str(exc))
                    self.log.warning("%s; reopening in %.1f s", exc, backoff)
                    self._stop.wait(backoff)
                    backoff = min(backoff * 2, MAX_BACKOFF_S)
                finally:
                    camera.disconnect()
        finally:
            ring.close(unlink=True)

    def _create_ring(self) -> FrameRing | None:
        backoff = self.backoff_s
        while not self._stop.is_set():
            try:
                return FrameRing.create(
                    self.frame_dir, self.config.name, self.config.height, self.config.width, 3, self.ring_slots
                )
            except (VlaEdgeError, OSError) as exc:
                self.counters.add(f"ring_errors.{self.config.name}")
                self._set_problem(f"cannot create the frame ring in {self.frame_dir}: {exc}")
                self.log.error("%s; retrying in %.1f s", self.problem, backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)
        return None

    def _deliver(self, ring: FrameRing, image: np.ndarray) -> None:
        t_capture = time.time()
        written = ring.write(image, t_capture)
        self.counters.add(f"frames.{self.config.name}")
        with self._lock:
            self._latest = (written.seq, t_capture, image)
            self._rate_window = [*self._rate_window[-30:], t_capture]
        ready = messages.FrameReady(
            camera=self.config.name,
            seq=written.seq,
            t_capture=t_capture,
            height=image.shape[0],
            width=image.shape[1],
            channels=3,
            slot=written.slot,
            segment=str(ring.path),
        )
        try:
            self._publish(ready)
        except BusError as exc:
            self.counters.add(f"dropped.{self.config.name}")
            self.log.warning("frame %s/%d written but not announced: %s", self.config.name, written.seq, exc)

    def _set_problem(self, problem: str | None) -> None:
        with self._lock:
            self.problem = problem
