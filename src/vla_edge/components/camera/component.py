"""Captures each configured camera on its own thread into shared memory and announces every frame.

Configuration
    A proposed configuration is checked when a deployment is validated (Greengrass
    sends it before applying): an invalid one is REJECTED with the reason, so it never
    reaches the device. An accepted change is applied live: only the cameras whose
    settings changed are restarted (a new frame size recreates that camera's ring;
    readers follow it), the others keep capturing.

Privacy
    Nothing here talks to the cloud. The only image that leaves shared memory is a
    rate-limited JPEG snapshot on request, and only if the recipe's access control
    grants the debug topics (it does not by default).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from vla_edge import messages
from vla_edge.bus.base import Bus
from vla_edge.cameras.base import CameraConfig
from vla_edge.components.base import Component, configuration_problem
from vla_edge.components.camera.config import CameraComponentConfig
from vla_edge.components.camera.worker import CameraWorker
from vla_edge.errors import AccessDenied, BusError

JPEG_QUALITY = 85


class CameraComponent(Component[CameraComponentConfig]):
    name = "camera"

    def __init__(self, bus: Bus, config: CameraComponentConfig) -> None:
        super().__init__(bus, config)
        self._workers: dict[str, CameraWorker] = {}
        self._config_changed = threading.Event()
        self._last_snapshot: dict[str, float] = {}
        self._subscriptions = [
            bus.subscribe_to_validate_configuration_updates(self.validate_configuration),
            bus.subscribe_to_configuration_update(lambda _path: self._config_changed.set()),
        ]
        self.snapshots_enabled = self._subscribe_snapshots()

    def _subscribe_snapshots(self) -> bool:
        try:
            self.router.subscribe(messages.TOPIC_SNAPSHOT_REQUEST, self._on_snapshot_request, messages.SnapshotRequest)
        except AccessDenied:
            self.log.info("debug snapshots are off (the recipe does not grant %s)", messages.TOPIC_SNAPSHOT_REQUEST)
            return False
        self.log.warning("debug snapshots are ON: JPEGs of the cameras can be requested on the local bus")
        return True

    # --- configuration -------------------------------------------------------------------------

    @staticmethod
    def validate_configuration(proposed: dict[str, Any]) -> str | None:
        """Deployment-time check: ``None`` accepts, a string is the reason for rejecting."""
        return configuration_problem(CameraComponentConfig, proposed)

    def _apply_configuration_change(self) -> None:
        self._config_changed.clear()
        new = self.changed_config()
        if new is None:
            return
        shared_changed = new.model_copy(update={"cameras": []}) != self.config.model_copy(update={"cameras": []})
        self.config = new
        wanted = {camera.name: camera for camera in new.cameras}
        for name, worker in list(self._workers.items()):
            if shared_changed or wanted.get(name) != worker.config:
                worker.stop()
                del self._workers[name]
        for camera in new.cameras:
            if camera.name not in self._workers:
                self._start_worker(camera)
        self.counters.add("config_applied")
        self.log.info("configuration applied live: cameras %s", sorted(wanted))

    # --- capture -------------------------------------------------------------------------------

    def _start_worker(self, camera: CameraConfig) -> None:
        worker = CameraWorker(
            camera,
            Path(self.config.frame_dir),
            self.config.ring_slots,
            self.config.reconnect_backoff_s,
            self.router.publish,
            self.counters,
            self.log,
        )
        self._workers[camera.name] = worker
        worker.start()

    def run(self, stop: threading.Event) -> None:
        for camera in self.config.cameras:
            self._start_worker(camera)
        self.set_state("RUNNING")
        try:
            while not stop.wait(0.1):
                if self._config_changed.is_set():
                    self._apply_configuration_change()
                problems = {n: w.problem for n, w in self._workers.items() if w.problem}
                if problems:
                    self.set_state("ERRORED", "; ".join(f"{n}: {p}" for n, p in sorted(problems.items())))
                else:
                    self.set_state("RUNNING")
                self.publish_health()
        finally:
            self.state = "STOPPING"
            for worker in self._workers.values():
                worker.stop()

    def workers(self) -> dict[str, CameraWorker]:
        return dict(self._workers)

    # --- debug snapshots -----------------------------------------------------------------------

    def _on_snapshot_request(self, request: messages.SnapshotRequest) -> None:
        import cv2

        worker = self._workers.get(request.camera)
        latest = worker.latest() if worker else None
        if latest is None:
            self.counters.add("snapshots_unavailable")
            self.log.warning("snapshot of %r requested, but it has no frame (cameras: %s)", request.camera, sorted(self._workers))
            return
        now = time.monotonic()
        if now - self._last_snapshot.get(request.camera, -1e9) < self.config.snapshot_min_interval_s:
            self.counters.add("snapshots_rate_limited")
            return
        self._last_snapshot[request.camera] = now
        seq, t_capture, image = latest
        ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            self.counters.add("snapshot_errors")
            return
        frame = messages.Frame(
            camera=request.camera,
            seq=seq,
            t_capture=t_capture,
            height=image.shape[0],
            width=image.shape[1],
            encoding="jpeg",
            request_id=request.request_id,
            pixels=jpeg.tobytes(),
        )
        try:
            self.router.publish(frame)
        except BusError as exc:
            self.counters.add("snapshot_errors")
            self.log.warning("snapshot not published: %s", exc)

    def metrics(self) -> dict[str, float | None]:
        figures: dict[str, float | None] = {"cameras": float(len(self._workers))}
        for name, worker in self._workers.items():
            figures[f"fps.{name}"] = round(worker.fps(), 2)
        return figures

    def close(self) -> None:
        for subscription in self._subscriptions:
            subscription.close()
        super().close()
