"""Camera frames in shared memory: one ring of slots per camera, each slot guarded by a seqlock.

Why: a 640x480 RGB frame is 921,600 bytes, and Greengrass IPC carries binary payloads
base64-encoded in JSON through the nucleus (encode, copy through a third process,
decode). So the camera writes pixels into a memory-mapped file, announces a small
``FrameReady`` over IPC, and readers copy the pixels straight out. The writer never
waits for readers: a slow reader misses frames (counted); it never slows the camera.

Layout of ``<directory>/<camera>.ring`` (little-endian, byte offsets)::

    header  0 magic   8 version u32   12 slots u32   16 slot capacity u64   24 slot stride u64
           32 writer pid u64   40 generation u64 (random per creation)   48 latest seq u64 (0: none)
           56 closed u32   60 height, width, channels, dtype code u32
    slot i at 128 + i * stride (a multiple of 64)
            0 seqlock u32   8 seq u64   16 t_capture f64   24 t_written f64
           32 height, width, channels, dtype code u32   48 nbytes u64   64 pixels

Seqlock: the writer makes the slot's counter odd, writes metadata and pixels, makes it
even, and only then publishes the seq as the latest. A reader loads the counter (odd:
retry), copies, loads it again and retries if it changed, so it never returns a torn
frame and never blocks the writer; after :data:`BUSY_LIMIT_S` of retries it raises
:class:`FrameUnavailable` instead of hanging. Seqs start at 1 in each ring; frame
``seq`` lives in slot ``(seq - 1) % slots``.

Memory ordering, in one place (:func:`fence`): x86-64 keeps stores in order and loads in
order (TSO); AArch64 (Raspberry Pi 5, Jetson) reorders both, so without barriers a reader
could see the new even counter before the pixels it covers. The writer needs store->store
order, the reader load->load. Python has no fence, so :func:`fence` releases, then
re-acquires, a ``threading.Lock``. On Linux, CPython builds that lock on a POSIX semaphore
(``sys.thread_info.lock == 'semaphore'``): release is ``sem_post``, a release
compare-and-swap in glibc; acquire is ``sem_trywait``, an acquire compare-and-swap. On
x86-64 both are ``lock``-prefixed instructions: full barriers. On AArch64 a store-release
followed in program order by a load-acquire is ordered (ARMv8 acquire/release are RCsc),
so everything before the release is ordered before everything after the acquire: a full
barrier. The calls are opaque to the C compiler, so the pixel ``memcpy`` cannot move across
them either. Not guaranteed: no language memory model (Python's or C11's) promises this
for a lock the other process never touches; it rests on how the C library implements
semaphores on x86-64 and AArch64 (32-bit ARM would also lose single-copy atomicity of the
64-bit latest seq, which readers only use as a hint checked against the slot). A compiled
``atomic_thread_fence(memory_order_seq_cst)`` would be the guaranteed version; it would
replace :func:`fence` alone.

Crashes: the writer holds an exclusive ``flock`` on its ring for its whole life, and the
kernel drops it when the process dies, however it dies. So :meth:`FrameRing.create` and
:func:`remove_stale_rings` tell a crashed writer's ring (lock free: removed) from a live
one (lock held: :class:`RingInUse`) with no pid-reuse or pid-namespace guesswork; the pid
in the header is for messages. A ring is built in a temporary file and hard-linked into
place, so nobody sees a half-written header; readers notice a new file at the path (or
the closed flag) and reopen it. ``mmap`` of a file rather than
``multiprocessing.shared_memory``, whose resource tracker on Python 3.11 unlinks a
segment when a *reader* process exits.

Docker: ``FrameReady`` carries the ring's path, so the inference container needs the
directory at the same path: ``-v /dev/shm/vla-edge:/dev/shm/vla-edge`` (or ``--ipc=host``).
Rings are mode 0640 in a 0770 directory: the container user needs the camera component's
group (make the directory setgid to that group so new rings inherit it); readers only read.
"""

from __future__ import annotations

import fcntl
import logging
import mmap
import os
import re
import secrets
import struct
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import numpy as np

from vla_edge.errors import FrameNotReady, FrameOverwritten, FrameUnavailable, RingInUse

log = logging.getLogger(__name__)

DEFAULT_DIRECTORY = Path("/dev/shm/vla-edge")
SUFFIX = ".ring"
FILE_MODE = 0o640
DIRECTORY_MODE = 0o770
MAGIC = b"VLARING\x00"
LAYOUT_VERSION = 1
HEADER_SIZE = 128
SLOT_HEADER_SIZE = 64
ALIGN = 64
POLL_S = 100e-6
"""Sleep between header polls in :meth:`FrameRingReader.wait_next`. Linux adds ~50 µs of
timer slack, so a waiting reader wakes every ~150 µs: about that much latency on average
and a few percent of one core per waiting reader. Longer saves CPU, shorter gains little."""
BUSY_LIMIT_S = 0.05
"""How long a reader retries a slot that keeps changing before giving up."""
REOPEN_CHECK_S = 0.01
"""How often a reader stats the path to notice a recreated ring (at once if the closed flag is set)."""

_HEADER = struct.Struct("<8sIIQQQQQIIIII")
_SLOT = struct.Struct("<QddIIIIQ")  # after the slot's 8-byte seqlock word
_LATEST_OFFSET, _CLOSED_OFFSET = 48, 56
_DTYPES: dict[int, np.dtype] = {1: np.dtype(np.uint8), 2: np.dtype("<u2"), 3: np.dtype("<f4")}
_CODES = {dtype: code for code, dtype in _DTYPES.items()}
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_FENCE_LOCK = threading.Lock()


def fence() -> None:
    """Full memory barrier between the shared-memory accesses before and after the call (module docstring)."""
    _FENCE_LOCK.acquire()
    _FENCE_LOCK.release()  # store-release: everything before is ordered before it...
    _FENCE_LOCK.acquire()  # ...and a later load-acquire is ordered after it: a full barrier
    _FENCE_LOCK.release()


@dataclass(frozen=True, slots=True)
class WriteInfo:
    seq: int
    slot: int
    t_written: float


@dataclass(frozen=True, slots=True)
class RingFrame:
    """One frame copied out of a ring (``image`` is the reader's own array, safe to keep)."""

    image: np.ndarray
    seq: int
    slot: int
    t_capture: float
    t_written: float
    generation: int


class _Mapping:
    """A mapped ring file: header values and numpy views on the words shared with the other side."""

    def __init__(self, mm: mmap.mmap, ident: tuple[int, int], path: Path) -> None:
        (magic, version, self.slots, self.capacity, self.stride, self.pid, self.generation, _latest, _closed,
         self.height, self.width, self.channels, code) = _HEADER.unpack_from(mm, 0)
        if magic != MAGIC or version != LAYOUT_VERSION:
            raise FrameUnavailable(f"{path} is not a version-{LAYOUT_VERSION} frame ring (magic {magic!r}, "
                                   f"version {version}): writer and reader come from different vla-edge releases")
        if code not in _DTYPES or self.slots < 1 or len(mm) != HEADER_SIZE + self.slots * self.stride:
            raise FrameUnavailable(f"{path}: inconsistent ring header; remove the file and restart the camera")
        self.mm, self.ident, self.dtype = mm, ident, _DTYPES[code]
        self.counters: np.ndarray = np.ndarray((self.slots,), np.uint32, buffer=mm, offset=HEADER_SIZE,
                                               strides=(self.stride,))
        self.latest: np.ndarray = np.ndarray((1,), np.uint64, buffer=mm, offset=_LATEST_OFFSET)
        self.closed: np.ndarray = np.ndarray((1,), np.uint32, buffer=mm, offset=_CLOSED_OFFSET)

    @classmethod
    def open(cls, path: Path) -> _Mapping:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError as exc:
            raise FrameUnavailable(f"no frame ring at {path}: is the camera component running, and is "
                                   f"{path.parent} mounted at the same path in this container?") from exc
        except PermissionError as exc:
            raise FrameUnavailable(f"cannot read {path}: this user needs the ring's group (files are "
                                   f"{FILE_MODE:#o})") from exc
        try:
            info = os.fstat(fd)
            if info.st_size < HEADER_SIZE:
                raise FrameUnavailable(f"{path} is too small to be a frame ring")
            mm = mmap.mmap(fd, info.st_size, mmap.MAP_SHARED, mmap.PROT_READ)
        finally:
            os.close(fd)
        try:
            return cls(mm, (info.st_dev, info.st_ino), path)
        except FrameUnavailable:
            mm.close()
            raise

    def slot_offset(self, slot: int) -> int:
        return HEADER_SIZE + slot * self.stride

    def close(self) -> None:
        del self.counters, self.latest, self.closed
        try:
            self.mm.close()
        except BufferError:  # a view is still referenced somewhere; the mapping goes when it does
            log.debug("ring mapping still exported; left to the garbage collector")


class FrameRing:
    """The writer side: one per camera, owned by the camera component. Build with :meth:`create`."""

    def __init__(self, path: Path, fd: int, mapping: _Mapping) -> None:
        self.path, self._fd, self._map = path, fd, mapping
        self.shape = (mapping.height, mapping.width, mapping.channels)
        self._pixels: list[np.ndarray] = [np.ndarray(self.shape, mapping.dtype, buffer=mapping.mm,
                                   offset=mapping.slot_offset(i) + SLOT_HEADER_SIZE) for i in range(mapping.slots)]
        self._seq = 0
        self._closed = False

    @classmethod
    def create(cls, directory: str | os.PathLike[str], camera: str, height: int, width: int, channels: int = 3,
               slots: int = 8, *, dtype: str | np.dtype = "uint8") -> FrameRing:
        """Create ``<directory>/<camera>.ring``, replacing a crashed writer's; :class:`RingInUse` if one runs."""
        if not _NAME.fullmatch(camera) or camera in (".", ".."):
            raise ValueError(f"camera name {camera!r} must be 1-64 of A-Z a-z 0-9 _ . -")
        if min(height, width, channels) < 1 or not 1 <= slots <= 1024:
            raise ValueError(f"bad ring geometry {height}x{width}x{channels}, {slots} slots")
        code = _CODES.get(np.dtype(dtype))
        if code is None:
            raise ValueError(f"dtype {dtype} not supported; use one of {sorted(str(d) for d in _CODES)}")
        directory = Path(directory)
        directory.mkdir(mode=DIRECTORY_MODE, parents=True, exist_ok=True)
        path = directory / f"{camera}{SUFFIX}"
        capacity = height * width * channels * np.dtype(dtype).itemsize
        stride = -(-(SLOT_HEADER_SIZE + capacity) // ALIGN) * ALIGN
        size = HEADER_SIZE + slots * stride
        generation = secrets.randbits(64) | 1
        tmp = directory / f"{camera}{SUFFIX}.tmp-{os.getpid()}-{generation:x}"
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
        mm: mmap.mmap | None = None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held for the writer's life: the ownership mark
            os.fchmod(fd, FILE_MODE)
            os.posix_fallocate(fd, 0, size)  # a full /dev/shm fails here, not later as SIGBUS mid-write
            mm = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
            _HEADER.pack_into(mm, 0, MAGIC, LAYOUT_VERSION, slots, capacity, stride, os.getpid(), generation, 0, 0,
                              height, width, channels, code)
            _claim(path, tmp)
            info = os.fstat(fd)
        except BaseException:
            if mm is not None:
                mm.close()
            os.close(fd)
            raise
        finally:
            tmp.unlink(missing_ok=True)
        log.info("frame ring %s created: %d slots of %dx%dx%d %s, generation %#x", path, slots, height, width,
                 channels, np.dtype(dtype), generation)
        return cls(path, fd, _Mapping(mm, (info.st_dev, info.st_ino), path))

    @property
    def generation(self) -> int:
        return self._map.generation

    def write(self, image: np.ndarray, t_capture: float) -> WriteInfo:
        """Copy ``image`` into the next slot and publish it; never waits for readers."""
        if self._closed:
            raise ValueError(f"frame ring {self.path} is closed")
        if image.shape != self.shape and not (self.shape[2] == 1 and image.shape == self.shape[:2]):
            raise ValueError(f"frame of shape {image.shape} does not fit ring {self.path} made for {self.shape}; "
                             "recreate the ring for the new size")
        if image.dtype != self._map.dtype:
            raise ValueError(f"frame dtype {image.dtype} does not match ring {self.path} ({self._map.dtype})")
        seq = self._seq + 1
        slot = (seq - 1) % self._map.slots
        counters = self._map.counters
        counter = int(counters[slot])
        counters[slot] = counter + 1  # odd: readers of this slot back off
        fence()
        np.copyto(self._pixels[slot], image.reshape(self.shape))
        t_written = time.time()
        _SLOT.pack_into(self._map.mm, self._map.slot_offset(slot) + 8, seq, t_capture, t_written, *self.shape,
                        _CODES[self._map.dtype], self._pixels[slot].nbytes)
        fence()
        counters[slot] = (counter + 2) & 0xFFFFFFFF  # even: committed
        fence()
        self._map.latest[0] = seq  # published only after the slot is committed
        self._seq = seq
        return WriteInfo(seq, slot, t_written)

    def close(self, unlink: bool = True) -> None:
        """Mark the ring closed (readers look for its successor), unlink it if asked, release ownership."""
        if self._closed:
            return
        self._closed = True
        self._map.closed[0] = 1
        fence()
        if unlink and _same_file(self._fd, self.path):  # unlink while still holding the lock
            self.path.unlink(missing_ok=True)
        self._pixels.clear()
        self._map.close()
        os.close(self._fd)  # releases the flock
        log.info("frame ring %s closed after %d frames%s", self.path, self._seq, " and removed" if unlink else "")

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class FrameRingReader:
    """The reader side (any process with read access). Not thread-safe: one per thread.

    Counters: ``overwritten`` (:meth:`read` asked for a frame no longer in the ring),
    ``skipped`` (frames between two consecutive frames this reader returned, within one
    ring generation), ``retries`` (attempts retried because the writer was in the slot),
    ``reopened`` (times the ring was recreated and this reader followed it).
    """

    def __init__(self, path: Path, mapping: _Mapping) -> None:
        self.path, self._map = path, mapping
        self.overwritten = self.skipped = self.retries = self.reopened = 0
        self._last: tuple[int, int] | None = None  # (generation, seq) of the newest frame returned
        self._checked = time.monotonic()

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> FrameRingReader:
        """Map an existing ring read-only; :class:`FrameUnavailable` if there is none or it is unreadable."""
        path = Path(path)
        return cls(path, _Mapping.open(path))

    @property
    def generation(self) -> int:
        return self._map.generation

    @property
    def shape(self) -> tuple[int, int, int]:
        return self._map.height, self._map.width, self._map.channels

    @property
    def latest_seq(self) -> int:
        """Seq of the newest published frame (0: none yet); a hint, re-checked against the slot on read."""
        self._follow()
        return int(self._map.latest[0])

    def latest(self) -> RingFrame | None:
        """The newest complete frame, or None if the writer has published none yet."""
        self._follow()
        for _ in range(8):
            seq = int(self._map.latest[0])
            if seq == 0:
                return None
            fence()
            try:
                return self._read(seq)
            except FrameOverwritten:  # lapped between the two loads: take the newer latest
                continue
        raise FrameUnavailable(f"{self.path}: the writer keeps lapping this reader")

    def read(self, seq: int) -> RingFrame:
        """Frame ``seq`` of the current ring; :class:`FrameOverwritten` or :class:`FrameNotReady` if not there."""
        self._follow()
        try:
            return self._read(seq)
        except FrameOverwritten:
            self.overwritten += 1
            raise

    def wait_next(self, after_seq: int, timeout: float, poll_s: float = POLL_S) -> RingFrame | None:
        """The newest frame with a seq above ``after_seq``, waiting up to ``timeout`` s; None on timeout.

        Newest, not ``after_seq + 1``: for control a fresh frame beats a complete history, so
        a reader slower than the camera skips frames (counted) instead of falling behind.
        Walk every frame with :meth:`read`. If the ring was recreated since the last frame
        this reader returned, ``after_seq`` belonged to the old ring and any frame counts.
        It polls the header every ``poll_s`` (see :data:`POLL_S` for the trade-off).
        """
        deadline = time.monotonic() + timeout
        generation = self._last[0] if self._last else self._map.generation
        while True:
            self._follow()
            threshold = after_seq if self._map.generation == generation else 0
            seq = int(self._map.latest[0])
            if seq > threshold:
                fence()
                try:
                    return self._read(seq)
                except FrameOverwritten:
                    continue
            if time.monotonic() >= deadline:
                return None
            time.sleep(poll_s)

    def close(self) -> None:
        self._map.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _read(self, seq: int) -> RingFrame:
        m = self._map
        if seq < 1:
            raise FrameNotReady(f"{self.path}: frame seqs start at 1, not {seq}")
        slot = (seq - 1) % m.slots
        offset = m.slot_offset(slot)
        give_up = 0.0
        while True:
            before = int(m.counters[slot])
            image = None
            if not before & 1:
                fence()
                stored, t_capture, t_written, height, width, channels, code, nbytes = _SLOT.unpack_from(
                    m.mm, offset + 8)
                if (stored == seq and _DTYPES.get(code) == m.dtype and nbytes <= m.capacity
                        and height * width * channels * m.dtype.itemsize == nbytes):
                    image = np.frombuffer(m.mm, m.dtype, height * width * channels, offset + SLOT_HEADER_SIZE
                                          ).reshape(height, width, channels).copy()
                fence()
                if int(m.counters[slot]) == before:
                    break
            self.retries += 1  # the writer was in this slot: whatever we copied may be torn
            now = time.monotonic()
            give_up = give_up or now + BUSY_LIMIT_S
            if now > give_up:
                raise FrameUnavailable(f"slot {slot} of {self.path} kept changing for {BUSY_LIMIT_S * 1e3:.0f} ms "
                                       "(writer stuck mid-write, or a ring too small for this reader)")
            time.sleep(20e-6 if before & 1 else 0)  # odd: let the writer finish; changed: retry at once
        if stored != seq:
            kind = FrameOverwritten if stored > seq else FrameNotReady
            raise kind(f"frame {seq} is not in {self.path}: its slot {slot} holds frame {stored} "
                       f"(latest {int(m.latest[0])}, {m.slots} slots)")
        if image is None:
            raise FrameUnavailable(f"slot {slot} of {self.path} holds inconsistent metadata; recreate the ring")
        if self._last and self._last[0] == m.generation and seq > self._last[1] + 1:
            self.skipped += seq - self._last[1] - 1
        if not self._last or self._last[0] != m.generation or seq > self._last[1]:
            self._last = (m.generation, seq)
        return RingFrame(image, seq, slot, t_capture, t_written, m.generation)

    def _follow(self) -> None:
        """Reopen the path if the writer recreated the ring (new size, restart, crash and restart)."""
        now = time.monotonic()
        if now - self._checked < REOPEN_CHECK_S and not self._map.closed[0]:
            return
        self._checked = now
        try:
            info = os.stat(self.path)
        except FileNotFoundError:  # writer gone for now: keep serving the last frames (t_capture tells their age)
            return
        if (info.st_dev, info.st_ino) == self._map.ident:
            return
        try:
            mapping = _Mapping.open(self.path)
        except (FrameUnavailable, OSError) as exc:
            log.debug("frame ring %s replaced but not readable yet: %s", self.path, exc)
            return
        old, self._map = self._map, mapping
        old.close()
        self.reopened += 1
        log.info("frame ring %s was recreated (generation %#x -> %#x, now %dx%dx%d); following it", self.path,
                 old.generation, mapping.generation, mapping.height, mapping.width, mapping.channels)


def remove_stale_rings(directory: str | os.PathLike[str] = DEFAULT_DIRECTORY) -> list[Path]:
    """Remove rings (and half-built temporary files) whose writer is gone; rings of running writers stay."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    removed = []
    for path in sorted(directory.glob(f"*{SUFFIX}")) + sorted(directory.glob(f"*{SUFFIX}.tmp-*")):
        try:
            if _remove_if_stale(path):
                removed.append(path)
        except RingInUse:
            continue
    return removed


def _claim(path: Path, tmp: Path) -> None:
    """Hard-link the initialised ``tmp`` to ``path``, first removing a crashed writer's ring there."""
    for _ in range(5):
        try:
            os.link(tmp, path)
            return
        except FileExistsError:
            _remove_if_stale(path)
    raise RingInUse(f"{path} keeps reappearing: another writer is creating the same ring")


def _remove_if_stale(path: Path) -> bool:
    """Unlink ``path`` if no live writer holds its lock (True); raise :class:`RingInUse` if one does."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid, generation = _owner(fd)
            raise RingInUse(f"frame ring {path} belongs to a running writer (pid {pid}, generation {generation:#x}): "
                            "another camera component already captures this camera; stop it first, or use "
                            "another camera name or ring directory") from None
        if not _same_file(fd, path):  # replaced while we waited: not the file we locked
            return False
        pid, _generation = _owner(fd)
        os.unlink(path)
        log.warning("removed stale frame ring %s (its writer, pid %s, exited without closing it)", path, pid)
        return True
    finally:
        os.close(fd)


def _owner(fd: int) -> tuple[str, int]:
    raw = os.pread(fd, _HEADER.size, 0)
    if len(raw) < _HEADER.size or raw[:8] != MAGIC:
        return "?", 0
    fields = _HEADER.unpack(raw)
    return str(fields[5]), fields[6]


def _same_file(fd: int, path: Path) -> bool:
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (info.st_dev, info.st_ino) == (mine.st_dev, mine.st_ino)
