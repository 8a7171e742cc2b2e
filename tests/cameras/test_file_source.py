"""``file`` source on real MJPG .avi files written by OpenCV."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from vla_edge.cameras.base import (
    Camera,
    CameraConfig,
    Capability,
    Pacer,
    SourceExhausted,
    make_camera,
)
from vla_edge.errors import HardwareError

FAST = 240.0  # fps: keeps the tests quick; pacing itself is tested below


def file_camera(path: Path, **overrides: object) -> Camera:
    fields = {"name": "clip", "source": "file", "path": str(path), "width": 64, "height": 48, "fps": FAST}
    return make_camera(CameraConfig.model_validate({**fields, **overrides}))


def read_until_error(camera: Camera, limit: int = 50) -> HardwareError:
    """Read until a HardwareError (bounded: a source that never fails is a test failure, not a hang)."""
    for _ in range(limit):
        try:
            camera.read()
        except HardwareError as exc:
            return exc
    pytest.fail(f"no HardwareError within {limit} reads")


def test_frames_come_back_in_order_looped_at_configured_size(video: Path, colour_of: Callable) -> None:
    camera = file_camera(video)
    camera.connect()
    try:
        assert camera.actual == Capability(64, 48, 15.0, "MJPG", "FFMPEG", frame_count=10)
        frames = [camera.read() for _ in range(25)]
    finally:
        camera.disconnect()
    assert all(f.shape == (48, 64, 3) and f.dtype == np.uint8 for f in frames)
    assert [colour_of(f) for f in frames] == [*range(10), *range(10), *range(5)]


def test_delivered_frames_are_rgb(video: Path) -> None:
    with file_camera(video) as camera:
        first = camera.read()
    # frame 0 was written as BGR (128, 255, 0): red 0, green 255, blue 128
    assert np.abs(first.reshape(-1, 3).mean(axis=0) - (0, 255, 128)).max() < 6


def test_rotation_90_swaps_the_aspect(video: Path, colour_of: Callable, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING), file_camera(video, width=48, height=64, rotation=90) as camera:
        frames = [camera.read() for _ in range(3)]
    assert [f.shape for f in frames] == [(64, 48, 3)] * 3
    assert [colour_of(f) for f in frames] == [0, 1, 2]
    assert not any("resized" in r.getMessage() for r in caplog.records), "rotated size matches: no resize"


def test_size_mismatch_warns_and_resizes(video: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING), file_camera(video, width=32, height=24) as camera:
        frame = camera.read()
    assert frame.shape == (24, 32, 3)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "camera 'clip' delivers 64x48 @ 15 fps (MJPG); configured 32x24" in warnings[0]
    assert "frames will be resized" in warnings[0]


def test_loop_false_ends_with_source_exhausted(make_video: Callable, tmp_path: Path) -> None:
    path = make_video(tmp_path / "short.avi", frames=3)
    with file_camera(path, loop=False) as camera:
        for _ in range(3):
            camera.read()
        with pytest.raises(SourceExhausted, match="has ended"):
            camera.read()


def test_file_deleted_mid_play_fails_then_reconnects_once_restored(
    video: Path, make_video: Callable, colour_of: Callable
) -> None:
    camera = file_camera(video)
    camera.connect()
    try:
        camera.read(), camera.read()
        video.unlink()  # the open file stays readable on Linux: the source must notice anyway
        error = read_until_error(camera, limit=1)
        assert "was deleted while playing" in str(error)
    finally:
        camera.disconnect()
    with pytest.raises(HardwareError, match="does not exist"):
        camera.connect()
    make_video(video)
    camera.connect()  # what the component's backoff loop does
    try:
        assert colour_of(camera.read()) == 0
    finally:
        camera.disconnect()


def test_file_truncated_mid_play_fails_then_reconnects_once_restored(video: Path, colour_of: Callable) -> None:
    content = video.read_bytes()
    camera = file_camera(video)
    camera.connect()
    try:
        camera.read()
        os.truncate(video, len(content) // 2)
        assert "was truncated while playing" in str(read_until_error(camera, limit=1))
    finally:
        camera.disconnect()
    with pytest.raises(HardwareError, match="cannot decode"):
        camera.connect()  # half an AVI does not open
    video.write_bytes(content)
    with camera:
        assert [colour_of(camera.read()) for _ in range(12)] == [*range(10), 0, 1]


def test_file_that_ends_early_plays_what_decodes_and_warns(
    video: Path, colour_of: Callable, caplog: pytest.LogCaptureFixture
) -> None:
    content = video.read_bytes()
    video.write_bytes(content[: int(len(content) * 0.9)])  # header intact, last frames and index gone
    with caplog.at_level(logging.WARNING), file_camera(video) as camera:
        indices = [colour_of(camera.read()) for _ in range(12)]
    assert indices[0] == 0 and 0 in indices[1:], "played from the start, then looped"
    assert any("may be truncated" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    ("content", "reason"),
    [(None, "does not exist"), (b"", "is empty"), (os.urandom(4096), "cannot decode")],
    ids=["missing", "empty", "not-a-video"],
)
def test_unusable_files_fail_at_connect(tmp_path: Path, content: bytes | None, reason: str) -> None:
    path = tmp_path / "bad.avi"
    if content is not None:
        path.write_bytes(content)
    camera = file_camera(path)
    with pytest.raises(HardwareError, match=reason):
        camera.connect()
    camera.disconnect()  # safe after a failed connect, as the component's finally does
    assert not camera.is_connected


def test_a_folder_is_not_a_video_file(tmp_path: Path) -> None:
    with pytest.raises(HardwareError, match="use source: images"):
        file_camera(tmp_path).connect()


def test_read_before_connect_is_a_hardware_error(video: Path) -> None:
    with pytest.raises(HardwareError, match="not connected"):
        file_camera(video).read()


def test_file_is_never_played_faster_than_fps(video: Path) -> None:
    # A lower bound only: sleeping never returns early, so this cannot flake on a slow machine.
    fps = 50.0
    with file_camera(video, fps=fps) as camera:
        start = time.monotonic()
        for _ in range(11):
            camera.read()
        elapsed = time.monotonic() - start
    assert elapsed >= 10 / fps * 0.95


def test_pacer_does_not_burst_after_a_stall() -> None:
    pacer = Pacer(10.0)
    pacer.start()
    now = time.monotonic()
    pacer.advance(now + 5.0)  # a frame released 5 s late
    assert not pacer.is_due(now + 5.0 + 0.05), "the next frame is a full period later, not at once"
    assert pacer.is_due(now + 5.0 + 0.1)
