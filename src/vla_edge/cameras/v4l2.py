"""The few V4L2 queries ``vla-edge camera list`` needs, with ``fcntl.ioctl`` and ``struct``.

Layouts follow ``linux/videodev2.h`` (native byte order, no padding inside these structs):

* ``struct v4l2_capability`` (104 bytes): driver[16] card[32] bus_info[32] version
  capabilities device_caps reserved[3]; ``VIDIOC_QUERYCAP = _IOR('V', 0, ...)``
* ``struct v4l2_fmtdesc`` (64 bytes): index type flags description[32] pixelformat
  mbus_code reserved[3]; ``VIDIOC_ENUM_FMT = _IOWR('V', 2, ...)``
* ``struct v4l2_frmsizeenum`` (44 bytes): index pixel_format type, then a union of
  {width height} (discrete) or {min_width max_width step_width min_height max_height
  step_height}, reserved[2]; ``VIDIOC_ENUM_FRAMESIZES = _IOWR('V', 74, ...)``
* ``struct v4l2_frmivalenum`` (52 bytes): index pixel_format width height type, then a
  union of a fraction {numerator denominator} or {min max step} fractions, reserved[2];
  ``VIDIOC_ENUM_FRAMEINTERVALS = _IOWR('V', 75, ...)``

Pack and unpack functions are pure (bytes in, values out) so they are tested without a
device; :func:`probe` runs the enumeration over any ``ioctl`` callable.
"""

from __future__ import annotations

import errno
import fcntl
import functools
import struct
from collections.abc import Callable
from dataclasses import dataclass

_IOC_WRITE, _IOC_READ = 1, 2


def _ioc(direction: int, kind: str, number: int, size: int) -> int:
    """The Linux ``_IOC`` request code (asm-generic layout: x86, ARM, RISC-V)."""
    return (direction << 30) | (size << 16) | (ord(kind) << 8) | number


QUERYCAP = struct.Struct("=16s32s32sIII12x")
FMTDESC = struct.Struct("=III32sII12x")
FRMSIZEENUM = struct.Struct("=III6I8x")
FRMIVALENUM = struct.Struct("=IIIII6I8x")

VIDIOC_QUERYCAP = _ioc(_IOC_READ, "V", 0, QUERYCAP.size)
VIDIOC_ENUM_FMT = _ioc(_IOC_READ | _IOC_WRITE, "V", 2, FMTDESC.size)
VIDIOC_ENUM_FRAMESIZES = _ioc(_IOC_READ | _IOC_WRITE, "V", 74, FRMSIZEENUM.size)
VIDIOC_ENUM_FRAMEINTERVALS = _ioc(_IOC_READ | _IOC_WRITE, "V", 75, FRMIVALENUM.size)

CAP_VIDEO_CAPTURE = 0x00000001
CAP_VIDEO_CAPTURE_MPLANE = 0x00001000
CAP_META_CAPTURE = 0x00800000
CAP_DEVICE_CAPS = 0x80000000
BUF_TYPE_VIDEO_CAPTURE = 1
BUF_TYPE_VIDEO_CAPTURE_MPLANE = 9
FMT_FLAG_COMPRESSED = 0x0001
FRMSIZE_TYPE_DISCRETE, FRMSIZE_TYPE_CONTINUOUS, FRMSIZE_TYPE_STEPWISE = 1, 2, 3
FRMIVAL_TYPE_DISCRETE = 1

_MAX_ENTRIES = 256  # a driver that never answers EINVAL must not loop forever

Ioctl = Callable[[int, int, bytes], bytes]
"""``ioctl(fd, request, buffer) -> buffer as the driver filled it`` (fcntl.ioctl's contract)."""


def fourcc_code(text: str) -> int:
    """``"MJPG"`` -> the little-endian 32-bit pixel format code."""
    return int.from_bytes(text.encode("ascii"), "little")


def fourcc_str(code: int) -> str:
    """The 32-bit pixel format code -> 4 characters (big-endian formats keep their trailing flag bit out)."""
    return (code & 0x7FFFFFFF).to_bytes(4, "little").decode("latin-1")


def _text(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace")


@dataclass(frozen=True)
class DeviceCaps:
    driver: str
    card: str
    bus_info: str
    version: int
    capabilities: int
    device_caps: int

    @property
    def node_caps(self) -> int:
        """Capabilities of this node (``device_caps`` when the driver fills it)."""
        return self.device_caps if self.capabilities & CAP_DEVICE_CAPS else self.capabilities

    @property
    def captures_video(self) -> bool:
        return bool(self.node_caps & (CAP_VIDEO_CAPTURE | CAP_VIDEO_CAPTURE_MPLANE))

    @property
    def buffer_type(self) -> int:
        return BUF_TYPE_VIDEO_CAPTURE if self.node_caps & CAP_VIDEO_CAPTURE else BUF_TYPE_VIDEO_CAPTURE_MPLANE


@dataclass(frozen=True)
class FormatDesc:
    index: int
    buffer_type: int
    flags: int
    description: str
    pixel_format: int

    @property
    def fourcc(self) -> str:
        return fourcc_str(self.pixel_format)

    @property
    def compressed(self) -> bool:
        return bool(self.flags & FMT_FLAG_COMPRESSED)


@dataclass(frozen=True)
class FrameSize:
    """A discrete frame size and the rates it supports (discrete rates, or (min, max) when ``fps_range``)."""

    width: int
    height: int
    fps: tuple[float, ...] = ()
    fps_range: bool = False


@dataclass(frozen=True)
class FrameSizeRange:
    """A stepwise or continuous range of frame sizes."""

    min_width: int
    max_width: int
    step_width: int
    min_height: int
    max_height: int
    step_height: int


def pack_querycap() -> bytes:
    return bytes(QUERYCAP.size)


def unpack_querycap(buffer: bytes) -> DeviceCaps:
    driver, card, bus, version, caps, device_caps = QUERYCAP.unpack(buffer)
    return DeviceCaps(_text(driver), _text(card), _text(bus), version, caps, device_caps)


def pack_fmtdesc(index: int, buffer_type: int) -> bytes:
    return FMTDESC.pack(index, buffer_type, 0, b"", 0, 0)


def unpack_fmtdesc(buffer: bytes) -> FormatDesc:
    index, buffer_type, flags, description, pixel_format, _mbus = FMTDESC.unpack(buffer)
    return FormatDesc(index, buffer_type, flags, _text(description), pixel_format)


def pack_frmsizeenum(index: int, pixel_format: int) -> bytes:
    return FRMSIZEENUM.pack(index, pixel_format, 0, 0, 0, 0, 0, 0, 0)


def unpack_frmsizeenum(buffer: bytes) -> FrameSize | FrameSizeRange:
    _index, _fmt, kind, *union = FRMSIZEENUM.unpack(buffer)
    if kind == FRMSIZE_TYPE_DISCRETE:
        return FrameSize(union[0], union[1])
    if kind in (FRMSIZE_TYPE_CONTINUOUS, FRMSIZE_TYPE_STEPWISE):
        return FrameSizeRange(*union)
    raise ValueError(f"unknown v4l2_frmsizeenum type {kind}")


def pack_frmivalenum(index: int, pixel_format: int, width: int, height: int) -> bytes:
    return FRMIVALENUM.pack(index, pixel_format, width, height, 0, 0, 0, 0, 0, 0, 0)


def unpack_frmivalenum(buffer: bytes) -> tuple[float, ...]:
    """Discrete: ``(fps,)``; stepwise/continuous: ``(min_fps, max_fps)``. A 0 fraction gives no rate."""
    _index, _fmt, _w, _h, kind, *union = FRMIVALENUM.unpack(buffer)

    def rate(numerator: int, denominator: int) -> float:
        return denominator / numerator if numerator and denominator else 0.0

    if kind == FRMIVAL_TYPE_DISCRETE:
        fps = rate(union[0], union[1])
        return (fps,) if fps else ()
    slowest, fastest = rate(union[2], union[3]), rate(union[0], union[1])  # max interval is min rate
    return (slowest, fastest) if slowest and fastest else ()


def _enumerate(ioctl: Ioctl, fd: int, request: int, pack: Callable[[int], bytes]) -> list[bytes]:
    answers = []
    for index in range(_MAX_ENTRIES):
        try:
            answers.append(ioctl(fd, request, pack(index)))
        except OSError as exc:
            if exc.errno == errno.EINVAL:  # the end of the list
                break
            raise
    return answers


def _rates(ioctl: Ioctl, fd: int, pixel_format: int, width: int, height: int) -> tuple[tuple[float, ...], bool]:
    answers = _enumerate(
        ioctl, fd, VIDIOC_ENUM_FRAMEINTERVALS, lambda i: pack_frmivalenum(i, pixel_format, width, height)
    )
    if not answers:
        return (), False
    if FRMIVALENUM.unpack(answers[0])[4] != FRMIVAL_TYPE_DISCRETE:
        return unpack_frmivalenum(answers[0]), True
    return tuple(r for a in answers for r in unpack_frmivalenum(a)), False


Formats = list[tuple[FormatDesc, list[FrameSize | FrameSizeRange]]]


def probe(fd: int, ioctl: Ioctl = fcntl.ioctl) -> tuple[DeviceCaps, Formats]:
    """QUERYCAP, then (for capture nodes) every pixel format with its frame sizes and rates.

    Raises OSError from the first ioctl (ENOTTY: not a V4L2 device).
    """
    caps = unpack_querycap(ioctl(fd, VIDIOC_QUERYCAP, pack_querycap()))
    if not caps.captures_video:
        return caps, []
    formats = []
    for raw in _enumerate(ioctl, fd, VIDIOC_ENUM_FMT, lambda i: pack_fmtdesc(i, caps.buffer_type)):
        desc = unpack_fmtdesc(raw)
        sizes: list[FrameSize | FrameSizeRange] = []
        try:
            answers = _enumerate(
                ioctl, fd, VIDIOC_ENUM_FRAMESIZES, functools.partial(pack_frmsizeenum, pixel_format=desc.pixel_format)
            )
        except OSError:  # ENOTTY: the driver does not enumerate sizes; the format is still listed
            answers = []
        for answer in answers:
            size = unpack_frmsizeenum(answer)
            if isinstance(size, FrameSize):
                try:
                    fps, ranged = _rates(ioctl, fd, desc.pixel_format, size.width, size.height)
                except OSError:
                    fps, ranged = (), False
                size = FrameSize(size.width, size.height, fps, ranged)
            sizes.append(size)
        formats.append((desc, sizes))
    return caps, formats
