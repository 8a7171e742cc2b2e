"""Resumable, verified transfer of a model's files into a staging directory, whatever the source.

A source (S3, a local directory) only knows how to read a byte range of one file; this
module does everything else the same way for all of them:

* a free-space check before the first byte, against the bytes still missing plus a margin;
* each file is appended to ``<file>.part`` one range (``chunk_size``) at a time, streamed in
  small pieces, so memory stays bounded by a piece whatever the model's size;
* a restarted transfer resumes at the ``.part``'s length. The sha256 of the bytes already
  there is rebuilt by reading the part once: no sidecar state can disagree with the disk,
  and reading locally is far cheaper than downloading again. (A power cut may leave garbage
  at a part's end; the final sha256 catches it and the file is fetched again.)
* transient errors (connection dropped, timeout, 5xx) are retried with exponential backoff;
  after ``max_attempts`` failures in a row without progress the transfer gives up;
* at the end of each file its size and sha256 must match the manifest, else the part is
  deleted and VerificationError raised; only then is it renamed to its final name;
* a full disk (ENOSPC) raises InsufficientSpace and keeps the part for a later resume.

Files already at their final name were verified when renamed; :meth:`ModelStore.install`
verifies the whole directory again before the model can ever be used.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import random
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, NamedTuple, Protocol

from vla_edge.errors import DownloadError, InsufficientSpace, VerificationError
from vla_edge.updater._fs import fsync_dir
from vla_edge.updater.hashing import file_sha256
from vla_edge.updater.manifest import FileEntry, ModelManifest
from vla_edge.updater.throttle import TokenBucket

log = logging.getLogger(__name__)

MiB = 1024 * 1024
PART_SUFFIX = ".part"
READ_PIECE = 64 * 1024
"""Bytes taken from a response body at a time: the unit of memory use and of throttling."""

ProgressFn = Callable[[int, int, float], None]
"""``progress(bytes_done, bytes_total, rate_bytes_per_s)``; bytes done include resumed ones."""


class _Usage(Protocol):
    free: int


DiskUsageFn = Callable[[Path], _Usage]
"""``shutil.disk_usage`` or a test's stand-in: only ``.free`` is read."""


class TransientError(DownloadError):
    """A failure worth retrying (connection lost, timeout, server busy); raised by range readers."""


class RangeReader(Protocol):
    """What a source provides: the bytes ``[start, end)`` of one file, as an iterator of pieces.

    Raises TransientError for what a retry may cure, DownloadError for what it cannot
    (missing object, no permission), VerificationError when the source's file is not the
    size the manifest says.
    """

    def describe(self, relative: str) -> str: ...

    def read_range(self, relative: str, start: int, end: int, size: int, piece: int) -> Iterator[bytes]: ...


@dataclass(frozen=True)
class TransferSettings:
    chunk_size: int = 8 * MiB
    """Bytes per range request: what one retry costs at most."""
    max_attempts: int = 5
    """Consecutive failures without a byte of progress before giving up."""
    backoff_s: float = 0.5
    backoff_max_s: float = 30.0
    space_margin_bytes: int = 64 * MiB
    """Free space left over after the download; a full root filesystem breaks more than the update."""

    def __post_init__(self) -> None:
        if self.chunk_size <= 0 or self.max_attempts <= 0 or self.space_margin_bytes < 0:
            raise ValueError("chunk_size and max_attempts must be positive, space_margin_bytes >= 0")


class _Progress(NamedTuple):
    done: int
    total: int
    started: float


class StagedTransfer:
    """Runs one transfer of a manifest's files from a RangeReader into a staging directory."""

    def __init__(
        self,
        reader: RangeReader,
        settings: TransferSettings,
        disk_usage: DiskUsageFn = shutil.disk_usage,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.reader = reader
        self.settings = settings
        self._disk_usage = disk_usage
        self._clock = clock
        self._sleep = sleep
        self._done = 0
        self._fetched = 0
        self._total = 0
        self._started = 0.0
        self._progress: ProgressFn | None = None
        self._bucket: TokenBucket | None = None

    def run(
        self,
        manifest: ModelManifest,
        staging_dir: Path,
        progress: ProgressFn | None = None,
        max_bytes_per_s: float | None = None,
    ) -> Path:
        """Bring ``staging_dir`` to exactly the manifest's files, verified one by one; returns it."""
        staging_dir = Path(staging_dir)
        staging_dir.mkdir(parents=True, exist_ok=True)
        self._progress = progress
        self._bucket = TokenBucket(max_bytes_per_s, clock=self._clock, sleep=self._sleep) if max_bytes_per_s else None
        self._total = manifest.total_bytes
        present = {relative: self._present(staging_dir, relative, entry) for relative, entry in manifest.files.items()}
        self._done = sum(present.values())
        self._check_space(staging_dir, self._total - self._done)
        self._fetched = 0
        self._started = self._clock()
        if self._done:
            log.info("resuming %s %s: %d of %d bytes already staged", manifest.name, manifest.version, self._done,
                     self._total)
        self._report()
        for relative, entry in manifest.files.items():
            if present[relative] < entry.size or not (staging_dir / relative).is_file():
                self._file(staging_dir, relative, entry)
        log.info("staged %s %s in %s (%d bytes fetched now)", manifest.name, manifest.version, staging_dir,
                 self._fetched)
        return staging_dir

    def _present(self, staging_dir: Path, relative: str, entry: FileEntry) -> int:
        """Bytes of this file already staged: all of it when complete, else the part's length."""
        final = staging_dir / relative
        if final.is_file():
            if final.stat().st_size == entry.size:
                return entry.size
            log.warning("%s has the wrong size; fetching it again", final)
            final.unlink()
        part = final.with_name(final.name + PART_SUFFIX)
        length = part.stat().st_size if part.exists() else 0
        return min(length, entry.size)

    def _check_space(self, staging_dir: Path, missing: int) -> None:
        free = self._disk_usage(staging_dir).free
        needed = missing + self.settings.space_margin_bytes
        if free < needed:
            raise InsufficientSpace(
                f"the model needs {_mb(missing)} more in {staging_dir} (plus a {_mb(self.settings.space_margin_bytes)} "
                f"margin) but {_mb(free)} is free; free space (e.g. prune old models) and try again"
            )

    def _report(self) -> None:
        if self._progress is not None:
            elapsed = self._clock() - self._started
            self._progress(self._done, self._total, self._fetched / elapsed if elapsed > 0 else 0.0)

    def _file(self, staging_dir: Path, relative: str, entry: FileEntry) -> None:
        final = staging_dir / relative
        part = final.with_name(final.name + PART_SUFFIX)
        final.parent.mkdir(parents=True, exist_ok=True)
        offset = part.stat().st_size if part.exists() else 0
        if offset > entry.size:
            part.unlink()
            raise VerificationError(
                f"{part} holds {offset} bytes but the manifest says {relative} has {entry.size}; the partial file "
                "was deleted: check that the manifest belongs to this model and fetch again"
            )
        digest = file_sha256(part, offset) if offset else hashlib.sha256()
        out = _open_append(part)
        try:
            offset = self._ranges(relative, entry, offset, out, digest)
            _durable_close(out, part)
        except VerificationError:
            _close_quietly(out, part)
            part.unlink(missing_ok=True)
            raise
        finally:
            _close_quietly(out, part)
        actual = digest.hexdigest()
        if actual != entry.sha256:
            part.unlink()
            raise VerificationError(
                f"{self.reader.describe(relative)}: sha256 {actual}, the manifest says {entry.sha256}; the download "
                "was deleted, fetch again. If it fails again, the object changed after the manifest was written: "
                "upload the model and its manifest together"
            )
        os.replace(part, final)
        fsync_dir(final.parent)

    def _ranges(self, relative: str, entry: FileEntry, offset: int, out: BinaryIO, digest: hashlib._Hash) -> int:
        piece = min(READ_PIECE, self._bucket.burst) if self._bucket else READ_PIECE
        failures = 0
        while offset < entry.size:
            end = min(offset + self.settings.chunk_size, entry.size)
            try:
                for data in self.reader.read_range(relative, offset, end, entry.size, piece):
                    if len(data) > end - offset:
                        raise VerificationError(
                            f"{self.reader.describe(relative)} sent more bytes than asked for; it is longer than "
                            f"the manifest's {entry.size} bytes"
                        )
                    if self._bucket is not None:
                        self._bucket.acquire(len(data))
                    _write(out, data)
                    digest.update(data)
                    offset += len(data)
                    self._done += len(data)
                    self._fetched += len(data)
                    failures = 0
                if offset < end:
                    raise TransientError(
                        f"{self.reader.describe(relative)}: the response ended at byte {offset} of {end}"
                    )
            except TransientError as exc:
                failures += 1
                if failures >= self.settings.max_attempts:
                    raise DownloadError(
                        f"gave up on {self.reader.describe(relative)} after {failures} attempts in a row ({exc}); "
                        "check the network, the bucket and prefix, and that the device may read them "
                        "(s3:GetObject); the next fetch resumes where this one stopped"
                    ) from exc
                delay = min(self.settings.backoff_max_s, self.settings.backoff_s * 2 ** (failures - 1))
                delay *= random.uniform(0.5, 1.0)
                log.warning("%s; retry %d of %d in %.1f s", exc, failures,
                            self.settings.max_attempts - 1, delay)
                self._sleep(delay)
                continue
            self._report()
        return offset


def _open_append(part: Path) -> BinaryIO:
    try:
        return part.open("ab")
    except OSError as exc:
        raise _write_error(exc, part) from exc


def _write(out: BinaryIO, data: bytes) -> None:
    try:
        out.write(data)
    except OSError as exc:
        raise _write_error(exc, Path(out.name)) from exc


def _close_quietly(out: BinaryIO, part: Path) -> None:
    """Close after an error; a second failure to flush (the disk is still full) is only logged,
    the first error is the one that explains what happened."""
    if out.closed:
        return
    try:
        out.close()
    except OSError as exc:
        log.debug("closing %s after an error failed too: %s", part, exc)


def _durable_close(out: BinaryIO, part: Path) -> None:
    try:
        out.flush()
        os.fsync(out.fileno())
        out.close()
    except OSError as exc:
        raise _write_error(exc, part) from exc


def _write_error(exc: OSError, part: Path) -> Exception:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return InsufficientSpace(
            f"the disk filled up while writing {part}; free space and fetch again: the download resumes from the "
            "bytes already written"
        )
    return DownloadError(f"cannot write {part}: {exc}; check the staging directory's permissions")


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"
