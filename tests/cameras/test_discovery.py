"""V4L2 discovery without a camera: struct packing from hand-built bytes, a fake sysfs/dev tree,
and a fake kernel answering the ioctls; plus grab_frame and write_image on real media."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

import cv2
import numpy as np
import pytest

from vla_edge.cameras import v4l2
from vla_edge.cameras.base import CameraConfig
from vla_edge.cameras.discovery import (
    PixelFormat,
    V4L2Device,
    format_device_table,
    grab_frame,
    list_v4l2_devices,
    write_image,
)
from vla_edge.errors import ConfigurationError, VlaEdgeError


def u32(*values: int) -> bytes:
    return b"".join(v.to_bytes(4, "little") for v in values)


def text(value: str, size: int) -> bytes:
    return value.encode().ljust(size, b"\0")


def test_request_codes_match_videodev2_h() -> None:
    assert v4l2.VIDIOC_QUERYCAP == 0x80685600
    assert v4l2.VIDIOC_ENUM_FMT == 0xC0405602
    assert v4l2.VIDIOC_ENUM_FRAMESIZES == 0xC02C564A
    assert v4l2.VIDIOC_ENUM_FRAMEINTERVALS == 0xC034564B


def test_fourcc_codes() -> None:
    assert v4l2.fourcc_code("MJPG") == 0x47504A4D
    assert v4l2.fourcc_str(0x47504A4D) == "MJPG"
    assert v4l2.fourcc_str(v4l2.fourcc_code("YUYV") | 1 << 31) == "YUYV"


def querycap_bytes(card: str, caps: int, device_caps: int) -> bytes:
    head = text("uvcvideo", 16) + text(card, 32) + text("usb-0000:00:14.0-1", 32)
    return head + u32(0x60500, caps, device_caps) + bytes(12)


def test_unpack_querycap() -> None:
    raw = querycap_bytes("HD USB Camera", 0x84A00001, 0x04200001)
    caps = v4l2.unpack_querycap(raw)
    assert (caps.driver, caps.card, caps.bus_info) == ("uvcvideo", "HD USB Camera", "usb-0000:00:14.0-1")
    assert caps.version == 0x60500
    assert caps.captures_video and caps.buffer_type == v4l2.BUF_TYPE_VIDEO_CAPTURE
    metadata = v4l2.unpack_querycap(querycap_bytes("HD USB Camera", 0x84A00001, 0x04800000))
    assert not metadata.captures_video, "device_caps of the node count, not the whole device's"
    assert len(v4l2.pack_querycap()) == 104


def test_fmtdesc_round_trip() -> None:
    request = v4l2.pack_fmtdesc(3, v4l2.BUF_TYPE_VIDEO_CAPTURE)
    assert len(request) == 64 and request[:8] == u32(3, 1)
    answer = u32(3, 1, 1) + text("Motion-JPEG", 32) + u32(v4l2.fourcc_code("MJPG"), 0) + bytes(12)
    desc = v4l2.unpack_fmtdesc(answer)
    assert (desc.index, desc.fourcc, desc.description, desc.compressed) == (3, "MJPG", "Motion-JPEG", True)


def test_frmsizeenum() -> None:
    mjpg = v4l2.fourcc_code("MJPG")
    request = v4l2.pack_frmsizeenum(2, mjpg)
    assert len(request) == 44 and request[:8] == u32(2, mjpg)
    discrete = v4l2.unpack_frmsizeenum(u32(2, mjpg, 1, 1280, 720) + bytes(16) + bytes(8))
    assert discrete == v4l2.FrameSize(1280, 720)
    stepwise = v4l2.unpack_frmsizeenum(u32(0, mjpg, 3, 16, 1920, 16, 16, 1080, 8) + bytes(8))
    assert stepwise == v4l2.FrameSizeRange(16, 1920, 16, 16, 1080, 8)
    with pytest.raises(ValueError):
        v4l2.unpack_frmsizeenum(u32(0, mjpg, 9) + bytes(32))


def test_frmivalenum() -> None:
    mjpg = v4l2.fourcc_code("MJPG")
    request = v4l2.pack_frmivalenum(1, mjpg, 640, 480)
    assert len(request) == 52 and request[:16] == u32(1, mjpg, 640, 480)
    assert v4l2.unpack_frmivalenum(u32(1, mjpg, 640, 480, 1, 1, 30) + bytes(16) + bytes(8)) == (30.0,)
    assert v4l2.unpack_frmivalenum(u32(0, mjpg, 640, 480, 1, 1001, 30000) + bytes(16) + bytes(8)) == (30000 / 1001,)
    # stepwise: min interval 1/60 s, max interval 1/5 s
    assert v4l2.unpack_frmivalenum(u32(0, mjpg, 640, 480, 3, 1, 60, 1, 5, 1, 60) + bytes(8)) == (5.0, 60.0)
    assert v4l2.unpack_frmivalenum(u32(0, mjpg, 640, 480, 1, 0, 0) + bytes(16) + bytes(8)) == ()


class FakeKernel:
    """Answers V4L2 ioctls for files of a fake /dev, as a UVC driver would."""

    FORMATS: ClassVar[list[tuple[str, str, int]]] = [("MJPG", "Motion-JPEG", 1), ("YUYV", "YUYV 4:2:2", 0)]
    SIZES: ClassVar[dict[str, list[tuple[int, int]]]] = {"MJPG": [(1280, 720), (640, 480)], "YUYV": [(640, 480)]}
    RATES: ClassVar[dict[str, list[tuple[int, int]]]] = {"MJPG": [(1, 30), (1, 15)], "YUYV": [(1, 10)]}

    def __init__(self, device_caps: dict[str, int]) -> None:
        self.device_caps = device_caps  # node name -> device_caps; a node not listed is not V4L2

    def __call__(self, fd: int, request: int, buffer: bytes) -> bytes:
        node = Path(os.readlink(f"/proc/self/fd/{fd}")).name
        if node not in self.device_caps:
            raise OSError(errno.ENOTTY, os.strerror(errno.ENOTTY))
        index = int.from_bytes(buffer[:4], "little")
        if request == v4l2.VIDIOC_QUERYCAP:
            return querycap_bytes(f"Camera {node}", 0x84A00001, self.device_caps[node])
        if request == v4l2.VIDIOC_ENUM_FMT and index < len(self.FORMATS):
            fourcc, name, flags = self.FORMATS[index]
            return u32(index, 1, flags) + text(name, 32) + u32(v4l2.fourcc_code(fourcc), 0) + bytes(12)
        fourcc = v4l2.fourcc_str(int.from_bytes(buffer[4:8], "little"))
        if request == v4l2.VIDIOC_ENUM_FRAMESIZES and index < len(self.SIZES.get(fourcc, [])):
            width, height = self.SIZES[fourcc][index]
            return buffer[:8] + u32(1, width, height) + bytes(16) + bytes(8)
        if request == v4l2.VIDIOC_ENUM_FRAMEINTERVALS and index < len(self.RATES.get(fourcc, [])):
            return buffer[:16] + u32(1, *self.RATES[fourcc][index]) + bytes(16) + bytes(8)
        raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))


def fake_tree(tmp_path: Path, nodes: dict[str, str], dev_nodes: list[str]) -> tuple[Path, Path]:
    sysfs, dev = tmp_path / "sys", tmp_path / "dev"
    for node, name in nodes.items():
        (sysfs / node).mkdir(parents=True)
        (sysfs / node / "name").write_text(name + "\n")
    (sysfs / "not-a-video-node").mkdir()
    dev.mkdir()
    for node in dev_nodes:
        (dev / node).write_bytes(b"")
    return sysfs, dev


def test_lists_capture_nodes_with_formats_sizes_rates_and_stable_paths(tmp_path: Path) -> None:
    sysfs, dev = fake_tree(
        tmp_path,
        {"video0": "HD USB Camera", "video1": "HD USB Camera", "video10": "bcm2835-codec", "video2": "Wrist Cam"},
        ["video0", "video1", "video10", "video2"],
    )
    (dev / "v4l" / "by-id").mkdir(parents=True)
    (dev / "v4l" / "by-id" / "usb-HD_Camera_123-video-index0").symlink_to("../../video0")
    kernel = FakeKernel({"video0": 0x04200001, "video1": 0x04800000, "video10": 0x04208000, "video2": 0x04200001})
    devices = list_v4l2_devices(sysfs, dev, ioctl=kernel)
    # video1 is the camera's metadata node, video10 a memory-to-memory codec: both left out
    assert [(d.index, d.name) for d in devices] == [(0, "HD USB Camera"), (2, "Wrist Cam")]
    first = devices[0]
    assert first.path == dev / "video0" and first.error is None and first.driver == "uvcvideo"
    assert first.stable_paths == (dev / "v4l" / "by-id" / "usb-HD_Camera_123-video-index0",)
    assert [(f.fourcc, f.compressed) for f in first.formats] == [("MJPG", True), ("YUYV", False)]
    assert first.formats[0].sizes == (
        v4l2.FrameSize(1280, 720, (30.0, 15.0)),
        v4l2.FrameSize(640, 480, (30.0, 15.0)),
    )
    table = format_device_table(devices)
    assert f"{dev / 'video0'}  (device: 0)  HD USB Camera  [usb-0000:00:14.0-1]" in table
    assert "stable path: " in table and "MJPG  Motion-JPEG, compressed" in table
    assert "1280x720  30, 15 fps" in table and "640x480  10 fps" in table


def test_nodes_that_cannot_be_queried_are_listed_with_the_reason(tmp_path: Path) -> None:
    sysfs, dev = fake_tree(tmp_path, {"video0": "Gone", "video3": "Plain file"}, ["video3"])
    devices = list_v4l2_devices(sysfs, dev)  # the real fcntl.ioctl on a regular file: ENOTTY
    assert [(d.index, d.error) for d in devices] == [
        (0, f"no device node {dev / 'video0'} (udev did not create it?)"),
        (3, "not a V4L2 device"),
    ]
    table = format_device_table(devices)
    assert "unavailable: not a V4L2 device" in table


def test_permission_denied_says_which_group(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root opens any file")
    sysfs, dev = fake_tree(tmp_path, {"video0": "Locked"}, ["video0"])
    (dev / "video0").chmod(0)
    [device] = list_v4l2_devices(sysfs, dev)
    assert device.error is not None and "'video' group" in device.error


def test_no_sysfs_means_no_devices(tmp_path: Path) -> None:
    assert list_v4l2_devices(tmp_path / "nothing", tmp_path) == []
    assert "No V4L2 cameras found" in format_device_table([])


def test_table_of_stepwise_sizes_and_rates() -> None:
    sizes = (v4l2.FrameSizeRange(32, 3280, 2, 32, 2464, 2), v4l2.FrameSize(640, 480, (5.0, 90.0), fps_range=True))
    device = V4L2Device(
        path=Path("/dev/video0"), index=0, name="unicam",
        formats=(PixelFormat("pRAA", "10-bit Bayer RGRB/GBGR Packed", False, sizes),),
    )
    table = format_device_table([device, V4L2Device(path=Path("/dev/video1"), index=1, name="empty")])
    assert "32x32 to 3280x2464 (steps 2x2)" in table and "640x480  5 to 90 fps" in table
    assert "no pixel formats reported" in table


def test_grab_frame_from_each_kind_of_source(tmp_path: Path, video: Path, colour_of: Callable) -> None:
    image = grab_frame(CameraConfig(name="clip", source="file", path=str(video), width=32, height=24))
    assert image.shape == (24, 32, 3) and colour_of(image) == 0
    assert grab_frame(CameraConfig(width=40, height=30)).shape == (30, 40, 3)
    folder = tmp_path / "pics"
    folder.mkdir()
    cv2.imwrite(str(folder / "0.png"), np.full((30, 40, 3), (0, 0, 255), np.uint8))
    red = grab_frame(CameraConfig(source="images", path=str(folder), width=40, height=30))
    assert (red == np.array([255, 0, 0], np.uint8)).all()


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".JPEG"])
def test_write_image_keeps_rgb(tmp_path: Path, suffix: str) -> None:
    image = np.zeros((24, 32, 3), np.uint8)
    image[..., 0] = 255  # red in RGB
    path = write_image(tmp_path / f"snap{suffix}", image)
    back = cv2.imread(str(path))
    assert back is not None and np.abs(back.astype(int) - (0, 0, 255)).max() < 4  # BGR red on disk


def test_write_image_refuses_other_formats(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"\.png, \.jpg or \.jpeg"):
        write_image(tmp_path / "snap.gif", np.zeros((4, 4, 3), np.uint8))


def test_write_image_into_a_missing_folder_fails_clearly(tmp_path: Path) -> None:
    with pytest.raises(VlaEdgeError, match="folder exists and is writable"):
        write_image(tmp_path / "missing" / "snap.png", np.zeros((4, 4, 3), np.uint8))
