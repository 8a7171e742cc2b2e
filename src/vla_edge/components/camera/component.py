"""Captures each configured camera on its own thread and publishes every frame.

A source that fails is reopened with exponential backoff; meanwhile the component
reports ERRORED with the reason and keeps the other cameras running.
"""

from __future__ import annotations

import threading
import time

from vla_edge import messages
from vla_edge.bus.base import Bus
from vla_edge.cameras.base import Camera, CameraConfig, make_camera
from vla_edge.components.base import Component
from vla_edge.components.camera.config import CameraComponentConfig
from vla_edge.errors import BusError, HardwareError

MAX_BACKOFF_S = 30.0


class CameraComponent(Component[CameraComponentConfig]):
    name = "camera"

    def __init__(self, bus: Bus, config: CameraComponentConfig) -> None:
        super().__init__(bus, config)
        self._failing: dict[str, str] = {}
        self._lock = threading.Lock()

    def run(self, stop: threading.Event) -> None:
        threads = [
            threading.Thread(target=self._capture_loop, args=(cfg, stop), name=f"camera-{cfg.name}", daemon=True)
            for cfg in self.config.cameras
        ]
        for thread in threads:
            thread.start()
        self.set_state("RUNNING")
        while not stop.wait(0.2):
            with self._lock:
                failing = dict(self._failing)
            if failing:
                self.set_state("ERRORED", "; ".join(f"{k}: {v}" for k, v in sorted(failing.items())))
            else:
                self.set_state("RUNNING")
            self.publish_health()
        for thread in threads:
            thread.join(timeout=5)

    def _capture_loop(self, config: CameraConfig, stop: threading.Event) -> None:
        backoff = self.config.reconnect_backoff_s
        seq = 0
        while not stop.is_set():
            camera = make_camera(config)
            try:
                camera.connect()
                self._mark(config.name, None)
                backoff = self.config.reconnect_backoff_s
                while not stop.is_set():
                    image = camera.read()
                    seq += 1
                    self._publish(messages.Frame.from_array(config.name, seq, image))
            except HardwareError as exc:
                self.counters.add(f"camera_errors.{config.name}")
                self._mark(config.name, str(exc))
                self.log.warning("%s; retrying in %.1f s", exc, backoff)
                stop.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)
            finally:
                camera.disconnect()

    def _publish(self, frame: messages.Frame) -> None:
        try:
            self.router.publish(frame)
        except BusError as exc:
            self.counters.add("publish_errors")
            self.log.warning("frame %s/%d not published: %s", frame.camera, frame.seq, exc)

    def _mark(self, camera: str, problem: str | None) -> None:
        with self._lock:
            if problem is None:
                self._failing.pop(camera, None)
            else:
                self._failing[camera] = problem

    def metrics(self) -> dict[str, float | None]:
        return {"cameras": float(len(self.config.cameras))}
