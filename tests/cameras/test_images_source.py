"""``images`` source on real PNG folders, and orientation checked pixel for pixel (PNG is lossless)."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from vla_edge.cameras.base import Camera, CameraConfig, SourceExhausted, make_camera
from vla_edge.cameras.images import ImageFolderCamera
from vla_edge.errors import HardwareError


def folder_camera(path: Path, width: int, height: int, **overrides: object) -> Camera:
    fields = {"name": "pics", "source": "images", "path": str(path), "width": width, "height": height, "fps": 240}
    return make_camera(CameraConfig.model_validate({**fields, **overrides}))


def write_numbered(folder: Path, names: list[str], size: tuple[int, int] = (8, 6)) -> None:
    """Each image is solid grey at the level of its position in ``names`` times 10 (written unsorted)."""
    folder.mkdir(exist_ok=True)
    for level, name in reversed(list(enumerate(names))):
        assert cv2.imwrite(str(folder / name), np.full((size[1], size[0], 3), level * 10, np.uint8))


def level(image: np.ndarray) -> int:
    return int(image[0, 0, 0]) // 10


def test_images_play_in_name_order_and_loop(tmp_path: Path) -> None:
    write_numbered(tmp_path, ["a_000.png", "a_001.png", "a_002.png", "b.png"])
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / ".hidden.png").write_bytes(b"ignored")
    with folder_camera(tmp_path, 8, 6) as camera:
        assert camera.actual is not None and camera.actual.frame_count == 4
        levels = [level(camera.read()) for _ in range(10)]
    assert levels == [0, 1, 2, 3, 0, 1, 2, 3, 0, 1]


def test_channel_order_is_rgb(tmp_path: Path) -> None:
    assert cv2.imwrite(str(tmp_path / "red.png"), np.full((6, 8, 3), (0, 0, 255), np.uint8))  # BGR red
    with folder_camera(tmp_path, 8, 6) as camera:
        image = camera.read()
    assert image.shape == (6, 8, 3) and image.dtype == np.uint8
    assert (image == np.array([255, 0, 0], np.uint8)).all()


ASYMMETRIC = np.random.default_rng(7).integers(0, 256, size=(3, 4, 3), dtype=np.uint8)  # 4 wide, 3 tall, RGB


@pytest.mark.parametrize(
    ("rotation", "flip", "expected"),
    [
        (0, "none", ASYMMETRIC),
        (90, "none", np.rot90(ASYMMETRIC, k=-1)),  # clockwise
        (180, "none", np.rot90(ASYMMETRIC, k=2)),
        (270, "none", np.rot90(ASYMMETRIC, k=1)),
        (0, "horizontal", ASYMMETRIC[:, ::-1]),
        (0, "vertical", ASYMMETRIC[::-1]),
        (0, "both", ASYMMETRIC[::-1, ::-1]),
        (90, "horizontal", np.rot90(ASYMMETRIC, k=-1)[:, ::-1]),  # flip applies to the rotated image
    ],
)
def test_rotation_and_flip_are_exact(tmp_path: Path, rotation: int, flip: str, expected: np.ndarray) -> None:
    assert cv2.imwrite(str(tmp_path / "pattern.png"), cv2.cvtColor(ASYMMETRIC, cv2.COLOR_RGB2BGR))
    height, width = expected.shape[:2]
    with folder_camera(tmp_path, width, height, rotation=rotation, flip=flip) as camera:
        np.testing.assert_array_equal(camera.read(), expected)


def test_images_of_another_size_are_resized(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write_numbered(tmp_path, ["0.png"], size=(64, 48))
    with caplog.at_level(logging.WARNING), folder_camera(tmp_path, 32, 24) as camera:
        assert camera.read().shape == (24, 32, 3)
    assert any("delivers 64x48; configured 32x24" in r.getMessage() for r in caplog.records)


def test_unreadable_image_is_skipped_and_counted(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write_numbered(tmp_path, ["0.png", "1.png", "2.png"])
    (tmp_path / "1.png").write_bytes(b"not a png")
    camera = folder_camera(tmp_path, 8, 6)
    assert isinstance(camera, ImageFolderCamera)
    with caplog.at_level(logging.WARNING), camera:
        levels = [level(camera.read()) for _ in range(4)]
    assert levels == [0, 2, 0, 2]
    assert camera.skipped == 2
    warnings = [r.getMessage() for r in caplog.records if "skipping image" in r.getMessage()]
    assert len(warnings) == 1 and "1.png" in warnings[0], "one warning per file"


def test_no_readable_image_fails(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(b"junk")
    (tmp_path / "b.jpg").write_bytes(b"junk")
    with pytest.raises(HardwareError, match="none of the 2 images"):
        folder_camera(tmp_path, 8, 6).connect()


def test_empty_or_missing_folder_fails(tmp_path: Path) -> None:
    (tmp_path / "readme.txt").write_text("no images here")
    with pytest.raises(HardwareError, match="no images in"):
        folder_camera(tmp_path, 8, 6).connect()
    with pytest.raises(HardwareError, match="does not exist"):
        folder_camera(tmp_path / "missing", 8, 6).connect()
    with pytest.raises(HardwareError, match="use source: file"):
        folder_camera(tmp_path / "readme.txt", 8, 6).connect()


def test_folder_deleted_mid_play_fails_then_reconnects_once_restored(tmp_path: Path) -> None:
    folder = tmp_path / "frames"
    write_numbered(folder, ["0.png", "1.png"])
    camera = folder_camera(folder, 8, 6)
    camera.connect()
    try:
        camera.read()
        shutil.rmtree(folder)
        with pytest.raises(HardwareError):
            for _ in range(3):
                camera.read()
    finally:
        camera.disconnect()
    write_numbered(folder, ["0.png", "1.png"])
    with camera:
        assert [level(camera.read()) for _ in range(3)] == [0, 1, 0]


def test_images_added_while_playing_join_at_the_next_loop(tmp_path: Path) -> None:
    write_numbered(tmp_path, ["0.png"])
    with folder_camera(tmp_path, 8, 6) as camera:
        camera.read()
        write_numbered(tmp_path, ["0.png", "1.png"])
        assert [level(camera.read()) for _ in range(3)] == [0, 1, 0]


def test_loop_false_ends_with_source_exhausted(tmp_path: Path) -> None:
    write_numbered(tmp_path, ["0.png", "1.png"])
    with folder_camera(tmp_path, 8, 6, loop=False) as camera:
        camera.read(), camera.read()
        with pytest.raises(SourceExhausted):
            camera.read()


def test_grey_and_alpha_images_become_rgb(tmp_path: Path) -> None:
    assert cv2.imwrite(str(tmp_path / "0.png"), np.full((6, 8), 200, np.uint8))
    assert cv2.imwrite(str(tmp_path / "1.png"), np.full((6, 8, 4), (0, 0, 255, 128), np.uint8))
    with folder_camera(tmp_path, 8, 6) as camera:
        grey, red = camera.read(), camera.read()
    assert (grey == 200).all() and (red == np.array([255, 0, 0], np.uint8)).all()
