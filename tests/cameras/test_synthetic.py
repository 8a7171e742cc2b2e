from __future__ import annotations

import numpy as np

from vla_edge.cameras.base import CameraConfig, make_camera
from vla_edge.cameras.synthetic import SyntheticCamera, frame_number


def test_synthetic_frames_have_configured_shape_and_move() -> None:
    camera = make_camera(CameraConfig(width=64, height=48, fps=200))
    assert isinstance(camera, SyntheticCamera)
    camera.connect()
    first, second = camera.read(), camera.read()
    camera.disconnect()
    assert first.shape == (48, 64, 3) and first.dtype == np.uint8
    assert not np.array_equal(first, second)
    assert (frame_number(first), frame_number(second)) == (1, 2)


def test_render_is_deterministic() -> None:
    camera = SyntheticCamera(CameraConfig(width=80, height=60))
    np.testing.assert_array_equal(camera.render(5, 1.0), camera.render(5, 1.0))
    assert frame_number(camera.render(1234, 0.0)) == 1234


def test_synthetic_reports_its_capability_and_honours_rotation() -> None:
    camera = make_camera(CameraConfig(width=64, height=48, fps=200, rotation=90, flip="horizontal"))
    camera.connect()
    assert camera.actual is not None and (camera.actual.width, camera.actual.height) == (48, 64)
    image = camera.read()
    camera.disconnect()
    assert image.shape == (48, 64, 3) and image.flags["C_CONTIGUOUS"]
    assert not camera.is_connected
