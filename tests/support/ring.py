"""Helpers for frame-ring tests: ring readers and writers in their own (spawned) processes.

* :class:`RemoteReader` drives a :class:`~vla_edge.cameras.ring.FrameRingReader` living in
  another process over a pipe, so tests read what another process really sees.
* :func:`pattern` / :func:`consistent` are the torn-frame detector: row ``r`` of frame
  ``seq`` holds ``(seq + r) % 251`` everywhere, so half of one frame and half of another
  never passes.
* :func:`hammer`, :func:`check_frames` and :func:`hold_ring` are process targets.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np

from vla_edge.cameras.ring import FrameRing, FrameRingReader, RingFrame
from vla_edge.errors import FrameOverwritten, FrameUnavailable

SPAWN = multiprocessing.get_context("spawn")
MODULO = 251


def pattern(seq: int, height: int, width: int, channels: int = 3) -> np.ndarray:
    rows = ((np.arange(height) + seq) % MODULO).astype(np.uint8)
    return np.broadcast_to(rows[:, None, None], (height, width, channels))


def consistent(image: np.ndarray, seq: int | None = None) -> bool:
    """True if ``image`` is exactly one pattern frame (of ``seq``, when given)."""
    base = int(image[0, 0, 0]) if seq is None else seq % MODULO
    return bool(np.array_equal(image, pattern(base, *image.shape)))


class RemoteReader:
    """A FrameRingReader in a spawned process; each call returns what that process got (or raises what it raised)."""

    def __init__(self, path: Path) -> None:
        self._conn, child = SPAWN.Pipe()
        self.process = SPAWN.Process(target=_serve_reader, args=(str(path), child), name="ring-reader", daemon=True)
        self.process.start()
        child.close()
        self.pid = self.call("pid")

    def call(self, method: str, *args: Any, timeout: float = 60.0) -> Any:
        self._conn.send((method, args))
        if not self._conn.poll(timeout):
            raise AssertionError(f"reader process did not answer {method}{args} within {timeout} s")
        ok, value = self._conn.recv()
        if not ok:
            raise value
        return value

    def close(self) -> None:
        try:
            self._conn.send(None)
        except OSError:
            pass
        self.process.join(10)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(10)


def _serve_reader(path: str, conn: Connection) -> None:
    reader: FrameRingReader | None = None
    while (request := conn.recv()) is not None:
        method, args = request
        try:
            if method == "pid":
                value: Any = os.getpid()
            elif method == "open":
                reader = FrameRingReader.open(path)
                value = reader.generation
            elif method == "counters":
                assert reader is not None
                value = {k: getattr(reader, k) for k in ("overwritten", "skipped", "retries", "reopened")}
            else:
                value = getattr(reader, method)(*args)
            if isinstance(value, RingFrame):
                value = {"image": value.image, "seq": value.seq, "slot": value.slot, "t_capture": value.t_capture,
                         "t_written": value.t_written, "generation": value.generation}
            conn.send((True, value))
        except Exception as exc:  # noqa: BLE001 - sent back and raised in the test process
            conn.send((False, exc))
    if reader is not None:
        reader.close()


def hammer(directory: str, camera: str, height: int, width: int, slots: int, ready: Any, stop: Any) -> None:
    """Write pattern frames as fast as possible until ``stop`` is set."""
    ring = FrameRing.create(directory, camera, height, width, 3, slots)
    frames = [np.ascontiguousarray(pattern(seq, height, width)) for seq in range(MODULO)]
    ring.write(frames[1], time.time())
    ready.set()
    seq = 1
    while not stop.is_set():
        for _ in range(200):
            seq += 1
            ring.write(frames[seq % MODULO], time.time())
    ring.close()


def check_frames(path: str, seconds: float, min_frames: int, raw: bool, results: Any) -> None:
    """Read frames for at least ``seconds`` and ``min_frames`` (deadline 120 s) and report what was seen.

    ``raw`` bypasses the seqlock on purpose: it copies the slot the writer is about to
    write straight out of the mapping, as a reader without the protocol would. The test
    uses it to show that the detector does catch torn frames: it stops at the first one,
    or after ``seconds``.
    """
    reader = FrameRingReader.open(path)
    counts = {"checked": 0, "torn": 0, "overwritten": 0, "unavailable": 0}
    started, attempt = time.monotonic(), 0
    while True:
        attempt += 1
        elapsed = time.monotonic() - started
        if raw and (counts["torn"] or elapsed > seconds):
            break
        if elapsed > 120 or (not raw and elapsed > seconds and counts["checked"] >= min_frames):
            break
        if raw:
            mapping = reader._map  # test-only: the unprotected path the seqlock exists to prevent
            slot = int(mapping.latest[0]) % mapping.slots
            offset = mapping.slot_offset(slot) + 64
            image = np.frombuffer(mapping.mm, np.uint8, int(np.prod(reader.shape)), offset).reshape(reader.shape)
            counts["torn"] += not consistent(image.copy())
            counts["checked"] += 1
            continue
        try:
            latest = reader.latest_seq
            frame = reader.read(latest - 1) if attempt % 2 and latest > 1 else reader.latest()
        except FrameUnavailable as exc:
            counts["overwritten" if isinstance(exc, FrameOverwritten) else "unavailable"] += 1
            continue
        assert frame is not None
        counts["torn"] += not consistent(frame.image, frame.seq)
        counts["checked"] += 1
    counts["retries"] = reader.retries
    counts["seconds"] = time.monotonic() - started
    reader.close()
    results.put(counts)


def hold_ring(directory: str, camera: str, ready: Any) -> None:
    """Create a ring, write one frame, then block until killed (the crash test's writer)."""
    ring = FrameRing.create(directory, camera, 24, 32, 3, 4)
    ring.write(np.ascontiguousarray(pattern(1, 24, 32)), time.time())
    ready.set()
    while True:
        time.sleep(1)
