"""``stream`` over a real local HTTP server (FFmpeg reads it as it would a camera's), and ``device`` faults.

There is no /dev/video* on CI machines: the device tests cover what happens without one.
"""

from __future__ import annotations

import functools
import http.server
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from vla_edge.cameras.base import Camera, CameraConfig, make_camera
from vla_edge.errors import HardwareError


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def http_root(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    handler = functools.partial(_QuietHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", tmp_path
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def silent_server() -> Iterator[str]:
    """Accepts connections and never answers: a camera that hangs."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except TimeoutError:
                continue
            except OSError:
                return

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://user:secret@127.0.0.1:{listener.getsockname()[1]}/live"
    finally:
        stop.set()
        thread.join(5)
        listener.close()
        for conn in accepted:
            conn.close()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stream_camera(url: str, **overrides: object) -> Camera:
    fields = {"name": "ipcam", "source": "stream", "url": url, "width": 64, "height": 48, "fps": 30, "timeoutS": 1}
    return make_camera(CameraConfig.model_validate({**fields, **overrides}))


def test_http_stream_delivers_frames_then_fails_when_it_ends(
    http_root: tuple[str, Path], make_video: Callable, colour_of: Callable
) -> None:
    base, root = http_root
    make_video(root / "live.avi")
    camera = stream_camera(f"{base}/live.avi")
    camera.connect()
    try:
        actual = camera.actual
        assert actual is not None
        assert (actual.width, actual.height, actual.backend) == (64, 48, "FFMPEG")
        frames = [camera.read() for _ in range(10)]
        assert [colour_of(f) for f in frames] == list(range(10))
        assert all(f.shape == (48, 64, 3) for f in frames)
        with pytest.raises(HardwareError, match="no frame from stream"):
            camera.read()
    finally:
        camera.disconnect()


def test_unreachable_stream_fails_at_connect() -> None:
    with pytest.raises(HardwareError, match="cannot open stream .* within 1 s; check the camera is powered"):
        stream_camera(f"http://127.0.0.1:{closed_port()}/live").connect()


def test_silent_stream_fails_after_the_timeout_not_never(silent_server: str) -> None:
    with pytest.raises(HardwareError) as caught:
        stream_camera(silent_server).connect()
    assert "user:***@" in str(caught.value) and "secret" not in str(caught.value)


def test_missing_device_fails_with_advice() -> None:
    for device in (63, "/dev/video63", "/dev/v4l/by-id/usb-no-such-camera-video-index0"):
        with pytest.raises(HardwareError, match="no device /dev/.*plug the camera in"):
            make_camera(CameraConfig(name="wrist", source="device", device=device)).connect()
