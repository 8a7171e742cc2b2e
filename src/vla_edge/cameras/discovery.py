"""Tooling for ``vla-edge camera list`` and ``vla-edge camera snap``.

:func:`list_v4l2_devices` walks ``/sys/class/video4linux`` and asks each ``/dev/videoN``
what it can capture; :func:`format_device_table` renders the result for people;
:func:`grab_frame` reads one frame from any configured source; :func:`write_image`
saves it.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vla_edge.cameras import v4l2
from vla_edge.cameras.base import CameraConfig, make_camera
from vla_edge.errors import ConfigurationError, VlaEdgeError

log = logging.getLogger(__name__)

_NODE = re.compile(r"^video(\d+)$")
DEVICE_WARMUP_FRAMES = 10
"""Frames :func:`grab_frame` discards from a device by default while exposure settles."""


@dataclass(frozen=True)
class PixelFormat:
    fourcc: str
    description: str
    compressed: bool
    sizes: tuple[v4l2.FrameSize | v4l2.FrameSizeRange, ...]


@dataclass(frozen=True)
class V4L2Device:
    """One V4L2 video node. ``error`` says why it could not be queried (then ``formats`` is empty)."""

    path: Path
    index: int
    """N of /dev/videoN: what ``device`` takes in a camera configuration."""
    name: str
    """The name the kernel gives the device (sysfs ``name``)."""
    stable_paths: tuple[Path, ...] = ()
    """/dev/v4l/by-id/... links to this node: stable across reboots and replugging."""
    driver: str = ""
    bus_info: str = ""
    formats: tuple[PixelFormat, ...] = ()
    error: str | None = None


def list_v4l2_devices(
    sysfs_root: Path = Path("/sys/class/video4linux"),
    dev_root: Path = Path("/dev"),
    *,
    ioctl: v4l2.Ioctl | None = None,
) -> list[V4L2Device]:
    """Video capture nodes in index order; nodes that cannot capture video are left out.

    Metadata nodes, output nodes and memory-to-memory codec/ISP nodes (answering QUERYCAP
    without a video capture capability) are skipped. A node that cannot be opened or
    queried is listed with ``error`` set. No sysfs (not Linux, or a container without it)
    gives an empty list. ``ioctl`` replaces ``fcntl.ioctl`` (tests).
    """
    if not sysfs_root.is_dir():
        log.info("%s does not exist: no V4L2 devices here", sysfs_root)
        return []
    nodes = sorted(
        (int(m.group(1)), entry) for entry in sysfs_root.iterdir() if (m := _NODE.match(entry.name))
    )
    links = _stable_links(dev_root)
    devices = []
    for index, entry in nodes:
        path = dev_root / entry.name
        name = _read_text(entry / "name") or "(no name)"
        stable = tuple(sorted(links.get(_resolve(path), [])))
        device = _query(path, index, name, stable, ioctl or fcntl.ioctl)
        if device is not None:
            devices.append(device)
    return devices


def _read_text(path: Path) -> str:
    try:
        return path.read_text(errors="replace").strip()
    except OSError:
        return ""


def _resolve(path: Path) -> Path:
    try:
        return path.resolve()
    except OSError:
        return path


def _stable_links(dev_root: Path) -> dict[Path, list[Path]]:
    links: dict[Path, list[Path]] = {}
    folder = dev_root / "v4l" / "by-id"
    try:
        entries = list(folder.iterdir())
    except OSError:  # no by-id folder: no USB cameras, or no udev
        return links
    for link in entries:
        links.setdefault(_resolve(link), []).append(link)
    return links


def _query(path: Path, index: int, name: str, stable: tuple[Path, ...], ioctl: v4l2.Ioctl) -> V4L2Device | None:
    base = V4L2Device(path=path, index=index, name=name, stable_paths=stable)
    try:
        fd = os.open(path, os.O_RDWR | os.O_NONBLOCK)
    except FileNotFoundError:
        return _with_error(base, f"no device node {path} (udev did not create it?)")
    except PermissionError:
        return _with_error(
            base, "permission denied: add the user to the 'video' group (ggc_user under Greengrass), then log in again"
        )
    except OSError as exc:
        return _with_error(base, f"cannot open: {exc.strerror or exc}")
    try:
        caps, formats = v4l2.probe(fd, ioctl)
    except OSError as exc:
        reason = "not a V4L2 device" if exc.errno == errno.ENOTTY else f"query failed: {exc.strerror or exc}"
        return _with_error(base, reason)
    finally:
        os.close(fd)
    if not caps.captures_video:
        log.debug("%s (%s) cannot capture video; left out", path, name)
        return None
    return V4L2Device(
        path=path,
        index=index,
        name=name,
        stable_paths=stable,
        driver=caps.driver,
        bus_info=caps.bus_info,
        formats=tuple(PixelFormat(d.fourcc, d.description, d.compressed, tuple(sizes)) for d, sizes in formats),
    )


def _with_error(device: V4L2Device, error: str) -> V4L2Device:
    return V4L2Device(device.path, device.index, device.name, device.stable_paths, error=error)


def _size_text(size: v4l2.FrameSize | v4l2.FrameSizeRange) -> str:
    if isinstance(size, v4l2.FrameSizeRange):
        return (
            f"{size.min_width}x{size.min_height} to {size.max_width}x{size.max_height} "
            f"(steps {size.step_width}x{size.step_height})"
        )
    text = f"{size.width}x{size.height}"
    if size.fps_range and len(size.fps) == 2:
        text += f"  {size.fps[0]:g} to {size.fps[1]:g} fps"
    elif size.fps:
        text += "  " + ", ".join(f"{f:g}" for f in sorted(set(size.fps), reverse=True)) + " fps"
    return text


def format_device_table(devices: list[V4L2Device]) -> str:
    """A readable listing: each camera, its stable path, formats, sizes and rates."""
    if not devices:
        return (
            "No V4L2 cameras found (no video capture node under /dev/video*). Check the cable and "
            "`dmesg | tail`; in a container, pass the device in (e.g. --device /dev/video0)."
        )
    lines = []
    for device in devices:
        head = f"{device.path}  (device: {device.index})  {device.name}"
        if device.bus_info:
            head += f"  [{device.bus_info}]"
        lines.append(head)
        for link in device.stable_paths:
            lines.append(f"    stable path: {link}")
        if device.error:
            lines.append(f"    unavailable: {device.error}")
            continue
        if not device.formats:
            lines.append("    no pixel formats reported")
        for fmt in device.formats:
            kind = ", compressed" if fmt.compressed else ""
            lines.append(f"    {fmt.fourcc}  {fmt.description}{kind}")
            lines.extend(f"        {_size_text(size)}" for size in fmt.sizes)
    return "\n".join(lines)


def grab_frame(config: CameraConfig, *, warmup_frames: int | None = None) -> np.ndarray:
    """Open the source, read one frame (HxWx3 uint8 RGB, the configured size), close it.

    ``warmup_frames`` frames are read and discarded first (default: 10 for a ``device``,
    whose first frames are often dark while exposure settles; 0 otherwise).
    Raises HardwareError as :meth:`Camera.read` does.
    """
    if warmup_frames is None:
        warmup_frames = DEVICE_WARMUP_FRAMES if config.source == "device" else 0
    camera = make_camera(config)
    try:
        camera.connect()
        for _ in range(warmup_frames):
            camera.read()
        return camera.read()
    finally:
        camera.disconnect()


_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}


def write_image(path: Path | str, image_rgb: np.ndarray) -> Path:
    """Save an HxWx3 uint8 RGB image as PNG or JPEG, chosen by the suffix of ``path``."""
    import cv2

    path = Path(path)
    if path.suffix.lower() not in _IMAGE_SUFFIXES:
        raise ConfigurationError(f"cannot write {path}: use a .png, .jpg or .jpeg file name")
    if image_rgb.dtype != np.uint8 or image_rgb.ndim != 3 or image_rgb.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 uint8 RGB image, got {image_rgb.dtype} {image_rgb.shape}")
    try:
        ok = cv2.imwrite(str(path), cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR))
    except cv2.error as exc:
        raise VlaEdgeError(f"cannot write {path}: {exc}") from exc
    if not ok:
        raise VlaEdgeError(f"cannot write {path}: check that the folder exists and is writable")
    return path
