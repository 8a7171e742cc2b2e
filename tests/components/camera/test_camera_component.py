"""The camera component with real media, shared-memory rings, and readers in another process."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from support import wait_for
from support.media import write_png_folder, write_video

from vla_edge import messages
from vla_edge.bus.memory import InMemoryBroker, InMemoryBus
from vla_edge.cameras.ring import FrameRingReader
from vla_edge.cameras.synthetic import frame_number
from vla_edge.components.base import load_config
from vla_edge.components.camera.component import CameraComponent
from vla_edge.components.camera.config import CameraComponentConfig

READER = """
import json, sys, time
from vla_edge.cameras.ring import FrameRingReader
from vla_edge.cameras.synthetic import frame_number
path, count = sys.argv[1], int(sys.argv[2])
reader = FrameRingReader.open(path)
seen, last = [], 0
deadline = time.monotonic() + 60
while len(seen) < count and time.monotonic() < deadline:
    frame = reader.wait_next(last, timeout=1.0)
    if frame is None:
        continue
    last = frame.seq
    seen.append({"seq": frame.seq, "t": frame.t_capture, "red": float(frame.image[..., 0].mean()),
                 "number": frame_number(frame.image), "shape": list(frame.image.shape)})
print(json.dumps(seen))
"""


class Running:
    def __init__(self, bus: InMemoryBus, config: dict[str, Any]) -> None:
        self.bus = bus
        self.ready: list[messages.FrameReady] = []
        self.snapshots: list[messages.Frame] = []
        self._lock = threading.Lock()
        bus.subscribe(messages.TOPIC_FRAME_ALL, self._on_ready)
        bus.subscribe(messages.TOPIC_SNAPSHOT_ALL, lambda t, p: self.snapshots.append(messages.decode(t, p)))
        self.component = CameraComponent(bus, load_config(CameraComponentConfig, config))
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.component.run, args=(self.stop,))

    def _on_ready(self, topic: str, payload: messages.Payload) -> None:
        message = messages.decode(topic, payload)
        assert isinstance(message, messages.FrameReady)
        with self._lock:
            self.ready.append(message)

    def frames_of(self, camera: str) -> list[messages.FrameReady]:
        with self._lock:
            return [r for r in self.ready if r.camera == camera]


@pytest.fixture
def run_camera(broker: InMemoryBroker, tmp_path: Path) -> Iterator[Any]:
    started: list[Running] = []

    def start(config: dict[str, Any]) -> Running:
        config = {"frameDir": str(tmp_path / "frames"), "reconnectBackoffS": 0.05, **config}
        running = Running(broker.bus(config), config)
        running.thread.start()
        started.append(running)
        return running

    yield start
    for running in started:
        running.stop.set()
        running.thread.join(10)
        running.component.close()
        assert not running.thread.is_alive()


def test_synthetic_video_and_images_reach_a_reader_in_another_process(run_camera: Any, tmp_path: Path) -> None:
    video = write_video(tmp_path / "clip.avi", frames=10)
    folder = write_png_folder(tmp_path / "pngs", frames=5)
    running = run_camera({"cameras": [
        {"name": "front", "width": 64, "height": 48, "fps": 60},
        {"name": "clip", "source": "file", "path": str(video), "width": 64, "height": 48, "fps": 30},
        {"name": "stills", "source": "images", "path": str(folder), "width": 32, "height": 24, "fps": 30},
    ]})
    wait_for(lambda: all(running.frames_of(c) for c in ("front", "clip", "stills")))
    frame_dir = tmp_path / "frames"
    readers = {
        camera: subprocess.Popen([sys.executable, "-c", READER, str(frame_dir / f"{camera}.ring"), "12"],
                                 stdout=subprocess.PIPE, text=True)
        for camera in ("front", "clip", "stills")
    }
    results = {camera: json.loads(reader.communicate(timeout=90)[0]) for camera, reader in readers.items()}
    announced = {(r.camera, r.seq): r for r in running.ready}
    for camera, frames in results.items():
        assert len(frames) == 12, camera
        seqs = [f["seq"] for f in frames]
        assert seqs == sorted(seqs) and len(set(seqs)) == 12, camera
        times = [f["t"] for f in frames]
        assert times == sorted(times), camera
        for frame in frames:  # the reader saw exactly the capture time the FrameReady announced
            if (camera, frame["seq"]) in announced:
                assert announced[(camera, frame["seq"])].t_capture == frame["t"]
    assert [f["number"] for f in results["front"]] == [f["seq"] for f in results["front"]]
    clip = [round(f["red"] / 20) for f in results["clip"]]
    assert all((b - a) % 10 in (0, 1, 2) for a, b in zip(clip, clip[1:])), clip  # video order, looping at 10
    stills = [round(f["red"] / 20) for f in results["stills"]]
    assert all((b - a) % 5 in (0, 1, 2) for a, b in zip(stills, stills[1:])), stills
    assert results["stills"][0]["shape"] == [24, 32, 3]


def test_deleted_source_reports_errored_then_recovers_when_restored(run_camera: Any, tmp_path: Path) -> None:
    video = write_video(tmp_path / "clip.avi", frames=10)
    running = run_camera({"cameras": [{"name": "clip", "source": "file", "path": str(video), "fps": 30}]})
    wait_for(lambda: running.frames_of("clip"))
    video.unlink()
    wait_for(lambda: running.component.state == "ERRORED", timeout=20)
    assert "clip" in running.component.detail
    assert "ERRORED" in running.bus.states
    count = len(running.frames_of("clip"))
    write_video(video, frames=10)
    wait_for(lambda: running.component.state == "RUNNING" and len(running.frames_of("clip")) > count + 5, timeout=30)
    assert running.component.counters.get("camera_errors.clip") >= 1
    assert running.thread.is_alive()


def test_live_configuration_update_changes_frame_size_without_restart(run_camera: Any, tmp_path: Path) -> None:
    running = run_camera({"cameras": [{"name": "front", "width": 64, "height": 48, "fps": 60}]})
    wait_for(lambda: running.frames_of("front"))
    thread = running.thread
    running.bus.update_configuration([], {"cameras": [{"name": "front", "width": 32, "height": 24, "fps": 60}]})
    wait_for(lambda: any(r.width == 32 for r in running.frames_of("front")), timeout=20)
    latest = running.frames_of("front")[-1]
    assert (latest.height, latest.width) == (24, 32)
    reader = FrameRingReader.open(latest.segment)
    try:
        frame = wait_for(lambda: reader.latest())
        assert frame.image.shape == (24, 32, 3)
    finally:
        reader.close()
    assert running.thread is thread and thread.is_alive()
    assert running.component.counters.get("config_applied") == 1


def test_invalid_live_update_is_refused_and_the_running_configuration_kept(run_camera: Any) -> None:
    running = run_camera({"cameras": [{"name": "front", "width": 64, "height": 48, "fps": 60}]})
    wait_for(lambda: running.frames_of("front"))
    running.bus.update_configuration([], {"cameras": [{"name": "front", "fps": -1}]})
    wait_for(lambda: running.component.counters.get("config_rejected") == 1)
    count = len(running.frames_of("front"))
    wait_for(lambda: len(running.frames_of("front")) > count + 3)


@pytest.mark.parametrize(
    ("proposed", "reason"),
    [
        ({"cameras": [{"name": "a", "source": "webcam"}]}, "source"),
        ({"cameras": [{"name": "a", "fps": 0}]}, "fps"),
        ({"cameras": [{"name": "a"}, {"name": "a"}]}, "unique"),
        ({"cameras": [{"name": "a", "source": "file"}]}, "path"),
        ({"cameras": [{"name": "a", "source": "stream", "url": "ftp://x/y"}]}, "rtsp://"),
        ({"cameras": []}, "cameras"),
        ({"ringSlots": 1}, "ringSlots"),
        ({"camras": []}, "camras"),
    ],
)
def test_deployment_validation_rejects_each_bad_case_with_its_reason(proposed: dict, reason: str) -> None:
    bus = InMemoryBroker().bus()
    component = CameraComponent(bus, CameraComponentConfig())
    try:
        rejection = bus.propose_configuration(proposed)
        assert rejection is not None and reason.lower() in rejection.lower(), rejection
        assert bus.propose_configuration({"cameras": [{"name": "ok"}]}) is None
    finally:
        component.close()


def test_snapshot_is_jpeg_and_rate_limited(run_camera: Any) -> None:
    running = run_camera({"cameras": [{"name": "front", "width": 64, "height": 48, "fps": 60}], "snapshotMinIntervalS": 60})
    wait_for(lambda: running.frames_of("front"))
    request = messages.SnapshotRequest(camera="front", request_id="r1")
    running.bus.publish(*messages.encode(request))
    running.bus.publish(*messages.encode(messages.SnapshotRequest(camera="front", request_id="r2")))
    running.bus.publish(*messages.encode(messages.SnapshotRequest(camera="nope")))
    snapshot = wait_for(lambda: running.snapshots and running.snapshots[0])
    assert snapshot.encoding == "jpeg" and snapshot.request_id == "r1"
    image = cv2.imdecode(np.frombuffer(snapshot.pixels, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == (48, 64, 3)
    assert len(running.snapshots) == 1
    assert running.component.counters.get("snapshots_rate_limited") == 1
    assert running.component.counters.get("snapshots_unavailable") == 1


def test_rings_are_removed_on_stop(run_camera: Any, tmp_path: Path) -> None:
    running = run_camera({"cameras": [{"name": "front", "width": 32, "height": 24, "fps": 60}]})
    wait_for(lambda: running.frames_of("front"))
    ring = Path(running.frames_of("front")[0].segment)
    assert ring.exists()
    running.stop.set()
    running.thread.join(10)
    assert not ring.exists()


def test_frame_numbers_of_synthetic_source_survive_the_ring(run_camera: Any) -> None:
    running = run_camera({"cameras": [{"name": "front", "width": 64, "height": 48, "fps": 60}]})
    ready = wait_for(lambda: running.frames_of("front")[-1] if len(running.frames_of("front")) > 3 else None)
    reader = FrameRingReader.open(ready.segment)
    try:
        frame = wait_for(lambda: reader.latest())
        assert frame_number(frame.image) == frame.seq
    finally:
        reader.close()


def test_non_looping_file_ends_without_an_error(run_camera: Any, tmp_path: Path) -> None:
    video = write_video(tmp_path / "clip.avi", frames=4)
    running = run_camera({"cameras": [{"name": "clip", "source": "file", "path": str(video), "loop": False, "fps": 60}]})
    wait_for(lambda: running.component.workers()["clip"].finished)
    assert len(running.frames_of("clip")) == 4
    assert running.component.state == "RUNNING"
    assert running.component.counters.get("camera_errors.clip") == 0
