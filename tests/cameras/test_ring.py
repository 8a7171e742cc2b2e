"""The shared-memory frame ring, with readers and writers in real, separate processes.

No test asserts on durations: they wait for conditions with deadlines. Ring
directories are temporary, never the real /dev/shm/vla-edge.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from support import wait_for
from support.ring import SPAWN, RemoteReader, check_frames, consistent, hammer, hold_ring, pattern

from vla_edge.cameras.ring import FILE_MODE, FrameRing, FrameRingReader, remove_stale_rings
from vla_edge.errors import FrameNotReady, FrameOverwritten, FrameUnavailable, RingInUse

H, W = 24, 32


@pytest.fixture
def ring_dir(tmp_path: Path) -> Path:
    return tmp_path / "rings"


@pytest.fixture
def remote(ring_dir: Path) -> Iterator[tuple[FrameRing, RemoteReader]]:
    ring = FrameRing.create(ring_dir, "front", H, W, 3, slots=8)
    reader = RemoteReader(ring.path)
    try:
        reader.call("open")
        yield ring, reader
    finally:
        reader.close()
        ring.close()


def test_another_process_reads_every_frame_in_order_with_its_metadata(remote: tuple[FrameRing, RemoteReader]) -> None:
    ring, reader = remote
    assert reader.call("latest") is None
    assert reader.call("wait_next", 0, 0.01) is None  # nothing yet: times out with None
    last = 0
    for seq in range(1, 21):
        t_capture = time.time() - 0.005
        info = ring.write(np.ascontiguousarray(pattern(seq, H, W)), t_capture)
        assert (info.seq, info.slot) == (seq, (seq - 1) % 8)
        frame = reader.call("wait_next", last, 30.0)
        assert (frame["seq"], frame["slot"], frame["generation"]) == (seq, info.slot, ring.generation)
        assert frame["t_capture"] == t_capture and frame["t_written"] == info.t_written
        assert frame["t_capture"] <= frame["t_written"]
        np.testing.assert_array_equal(frame["image"], pattern(seq, H, W))
        last = frame["seq"]
    for seq in range(13, 21):  # the last 8 frames are all still in the 8 slots
        frame = reader.call("read", seq)
        assert frame["seq"] == seq and consistent(frame["image"], seq)
    assert reader.call("latest")["seq"] == 20
    assert reader.call("counters") == {"overwritten": 0, "skipped": 0, "retries": 0, "reopened": 0}


def test_overwritten_and_not_yet_written_frames_raise_and_are_counted(remote: tuple[FrameRing, RemoteReader]) -> None:
    ring, reader = remote
    for seq in range(1, 11):
        ring.write(np.ascontiguousarray(pattern(seq, H, W)), time.time())
    with pytest.raises(FrameOverwritten, match="frame 2 is not in"):
        reader.call("read", 2)  # slot 1 now holds frame 10
    with pytest.raises(FrameNotReady):
        reader.call("read", 11)
    assert reader.call("read", 3)["seq"] == 3
    assert reader.call("wait_next", 3, 5.0)["seq"] == 10  # the newest, skipping 4..9
    for seq in range(11, 14):
        ring.write(np.ascontiguousarray(pattern(seq, H, W)), time.time())
    assert reader.call("wait_next", 10, 5.0)["seq"] == 13  # 11 and 12 skipped
    counters = reader.call("counters")
    assert counters["overwritten"] == 1 and counters["skipped"] == 6 + 2


def test_the_seqlock_never_lets_a_torn_frame_through(ring_dir: Path) -> None:
    """A writer process overwrites a 2-slot ring as fast as it can while a reader process checks every frame.

    First a reader that bypasses the seqlock must see torn frames (so the writer and the
    detector can produce and catch them); then the real reader must see none.
    """
    height, width = 240, 320
    ready, stop = SPAWN.Event(), SPAWN.Event()
    writer = SPAWN.Process(target=hammer, args=(str(ring_dir), "front", height, width, 2, ready, stop), daemon=True)
    writer.start()
    try:
        assert ready.wait(60), "writer did not start"
        path = str(ring_dir / "front.ring")
        reports = {}
        for mode, seconds, min_frames in (("raw", 60.0, 0), ("seqlock", 3.0, 2000)):
            results = SPAWN.Queue()
            reader = SPAWN.Process(target=check_frames, args=(path, seconds, min_frames, mode == "raw", results))
            reader.start()
            reports[mode] = results.get(timeout=180)
            reader.join(30)
        print(f"\ntorn-read check: {reports}")
    finally:
        stop.set()
        writer.join(30)
    assert reports["raw"]["torn"] >= 1, "the unprotected reader never saw a torn frame: the check proves nothing"
    assert reports["seqlock"]["torn"] == 0, f"torn frames passed the seqlock: {reports['seqlock']}"
    assert reports["seqlock"]["checked"] >= 2000


def test_a_killed_writers_ring_is_removed_on_the_next_create_and_a_live_one_is_refused(ring_dir: Path) -> None:
    ready = SPAWN.Event()
    writer = SPAWN.Process(target=hold_ring, args=(str(ring_dir), "wrist", ready), daemon=True)
    writer.start()
    assert ready.wait(60), "writer did not start"
    path = ring_dir / "wrist.ring"
    with FrameRingReader.open(path) as old_reader:
        old_generation = old_reader.generation
        try:
            with pytest.raises(RingInUse, match=f"pid {writer.pid}"):
                FrameRing.create(ring_dir, "wrist", H, W)
            assert remove_stale_rings(ring_dir) == []
            assert path.exists()
        finally:
            writer.kill()  # SIGKILL: no close(), no unlink
            writer.join(30)
        assert path.exists() and old_reader.latest() is not None  # the dead writer's ring is still there
        with FrameRing.create(ring_dir, "wrist", H, W) as ring:
            assert ring.generation != old_generation
            ring.write(np.ascontiguousarray(pattern(7, H, W)), time.time())
            frame = wait_for(lambda: old_reader.wait_next(1, 0.1))  # after_seq 1 was the old ring's: follows
            assert frame.generation == ring.generation and frame.seq == 1 and consistent(frame.image, 7)
            assert old_reader.reopened == 1
        assert not path.exists()


def test_remove_stale_rings_removes_only_dead_writers_rings(ring_dir: Path) -> None:
    ready = SPAWN.Event()
    dead = SPAWN.Process(target=hold_ring, args=(str(ring_dir), "dead", ready), daemon=True)
    dead.start()
    assert ready.wait(60)
    dead.kill()
    dead.join(30)
    with FrameRing.create(ring_dir, "alive", H, W):
        assert remove_stale_rings(ring_dir) == [ring_dir / "dead.ring"]
        assert sorted(p.name for p in ring_dir.iterdir()) == ["alive.ring"]
    assert remove_stale_rings(ring_dir / "missing") == []


def test_a_reader_process_follows_the_writer_recreating_the_ring_at_another_size(ring_dir: Path) -> None:
    ring = FrameRing.create(ring_dir, "front", H, W)
    reader = RemoteReader(ring.path)
    try:
        reader.call("open")
        for seq in range(1, 6):
            ring.write(np.ascontiguousarray(pattern(seq, H, W)), time.time())
        assert reader.call("wait_next", 0, 30.0)["seq"] == 5
        old_generation = ring.generation
        with pytest.raises(ValueError, match="recreate the ring"):
            ring.write(np.zeros((2 * H, 2 * W, 3), np.uint8), time.time())
        ring.close()  # the camera component does this on a size change...
        ring = FrameRing.create(ring_dir, "front", 2 * H, 2 * W)  # ...and creates the new ring
        ring.write(np.ascontiguousarray(pattern(3, 2 * H, 2 * W)), time.time())
        frame = reader.call("wait_next", 5, 30.0)  # after_seq belonged to the old ring
        assert frame["image"].shape == (2 * H, 2 * W, 3) and consistent(frame["image"], 3)
        assert frame["seq"] == 1 and frame["generation"] == ring.generation != old_generation
        counters = reader.call("counters")
        assert counters["reopened"] == 1 and counters["skipped"] == 0
    finally:
        reader.close()
        ring.close()


def test_file_mode_validation_and_a_missing_ring(ring_dir: Path) -> None:
    with FrameRing.create(ring_dir, "front", H, W, 1, slots=2) as ring:
        assert stat.S_IMODE(os.stat(ring.path).st_mode) == FILE_MODE
        ring.write(np.zeros((H, W), np.uint8), time.time())  # one channel: HxW accepted
        with pytest.raises(ValueError, match="dtype"):
            ring.write(np.zeros((H, W, 1), np.float32), time.time())
        with FrameRingReader.open(ring.path) as reader:
            frame = reader.latest()
            assert frame is not None and frame.image.shape == (H, W, 1)
            assert frame.image.flags.owndata and frame.image.flags.writeable  # the reader's own copy
    for bad in ("../x", "", "a/b"):
        with pytest.raises(ValueError, match="camera name"):
            FrameRing.create(ring_dir, bad, H, W)
    with pytest.raises(FrameUnavailable, match="no frame ring"):
        FrameRingReader.open(ring_dir / "front.ring")
    (ring_dir / "junk.ring").write_bytes(b"x" * 200)
    with pytest.raises(FrameUnavailable, match="not a version-1 frame ring"):
        FrameRingReader.open(ring_dir / "junk.ring")
