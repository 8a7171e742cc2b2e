"""Model files from a local directory: a Greengrass artifact (``{artifacts:path}``) or a dev build.

Same shape and guarantees as :class:`vla_edge.updater.download.S3ModelSource` (resumable
``.part`` files, sha256 per file, free-space check, bandwidth cap): the artifact
directory belongs to Greengrass and may be on another filesystem, so the model is copied
into staging and verified there rather than trusted where it lies.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from vla_edge.errors import DownloadError, VerificationError
from vla_edge.updater.manifest import ModelManifest
from vla_edge.updater.transfer import MiB, DiskUsageFn, ProgressFn, StagedTransfer, TransferSettings


class LocalDirectorySource:
    """Copies a model's files from a directory on this machine, verifying each against the manifest."""

    def __init__(
        self,
        chunk_size: int = 8 * MiB,
        space_margin_bytes: int = 64 * MiB,
        disk_usage: DiskUsageFn = shutil.disk_usage,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = TransferSettings(chunk_size=chunk_size, max_attempts=1, space_margin_bytes=space_margin_bytes)
        self._disk_usage = disk_usage
        self._clock = clock
        self._sleep = sleep

    def fetch(
        self,
        directory: Path,
        manifest: ModelManifest,
        staging_dir: Path,
        progress: ProgressFn | None = None,
        max_bytes_per_s: float | None = None,
    ) -> Path:
        """Copy (or resume copying) the manifest's files from ``directory`` into ``staging_dir``."""
        directory = Path(directory)
        if not directory.is_dir():
            raise DownloadError(f"{directory} is not a directory; check the artifact path in the deployment")
        transfer = StagedTransfer(_FileReader(directory), self.settings, self._disk_usage, self._clock, self._sleep)
        return transfer.run(manifest, staging_dir, progress, max_bytes_per_s)


class _FileReader:
    """The RangeReader of :mod:`.transfer` over plain files."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def describe(self, relative: str) -> str:
        return str(self.root / relative)

    def read_range(self, relative: str, start: int, end: int, size: int, piece: int) -> Iterator[bytes]:
        path = self.root / relative
        try:
            handle = path.open("rb")
        except FileNotFoundError as exc:
            raise DownloadError(f"{path} does not exist; check that the artifact holds the manifest's model") from exc
        except OSError as exc:
            raise DownloadError(f"cannot read {path}: {exc}") from exc
        with handle:
            actual = path.stat().st_size
            if actual != size:
                state = "longer" if actual > size else "shorter"
                raise VerificationError(f"{path} is {actual} bytes, {state} than the manifest's {size}")
            handle.seek(start)
            remaining = end - start
            while remaining > 0:
                data = handle.read(min(piece, remaining))
                if not data:
                    raise VerificationError(
                        f"{path} ended at byte {end - remaining}; it is shorter than the manifest says"
                    )
                remaining -= len(data)
                yield data
