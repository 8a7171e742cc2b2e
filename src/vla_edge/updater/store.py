"""The device's model store: verified models, the downloads in progress, and which model is active.

Layout under ``root``::

    models/<name>/<version>-<sha12>/                 a verified model, exactly its manifest's files
    models/<name>/<version>-<sha12>.manifest.json    its manifest (beside it, so the directory's
                                                     digest is the manifest's sha256)
    staging/<name>-<version>-<sha12>/                a download in progress (``*.part`` files)
    staging/<name>-<version>-<sha12>.lock            held while a download writes there
    active.json, active.json.prev                    the active model and the ones before it
    .lock                                            serialises changes across processes

The rules that make an update safe:

* Only :meth:`ModelStore.install` creates a model, and it verifies every file against the
  manifest first. The manifest is written before the directory is renamed into place, and
  the rename is the commit: a crash leaves either no model or a complete one, and a
  partial or unverified download can never be activated.
* ``active.json`` is the single source of truth for what serves; it changes only under the
  store lock and atomically (see :mod:`vla_edge.updater.record`).
* :meth:`prune` never removes the active model, the ones kept for rollback, or a model
  installed but not yet activated.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from vla_edge.errors import ManifestError, ModelUpdateError, VerificationError
from vla_edge.messages import ModelRef
from vla_edge.updater._fs import fsync_dir
from vla_edge.updater.locking import StoreLock, try_exclusive
from vla_edge.updater.manifest import MANIFEST_FILE, ModelManifest, read_manifest, verify_directory, write_manifest
from vla_edge.updater.record import HISTORY_LIMIT, RECORD_FILE, ActiveRecord, RecordFile

log = logging.getLogger(__name__)

MANIFEST_SUFFIX = ".manifest.json"
_MODEL_DIR = re.compile(r"^(?P<version>.+)-(?P<sha12>[0-9a-f]{12})$")


@dataclass(frozen=True)
class InstalledModel:
    """A verified model in the store: its identity and where its files are."""

    ref: ModelRef
    path: Path
    manifest_path: Path

    def manifest(self) -> ModelManifest:
        return read_manifest(self.manifest_path)


def model_key(ref: ModelRef | ModelManifest) -> str:
    """``<version>-<sha12>``: a version re-published with other bytes gets its own directory."""
    return f"{ref.version}-{ref.sha256[:12]}"


class ModelStore:
    """Verified models on disk and the record of which one is active; safe for threads and processes."""

    def __init__(self, root: Path, lock_timeout_s: float | None = 60.0) -> None:
        self.root = Path(root)
        self.models_dir = self.root / "models"
        self.staging_root = self.root / "staging"
        try:
            self.models_dir.mkdir(parents=True, exist_ok=True)
            self.staging_root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ModelUpdateError(f"cannot create the model store in {self.root}: {exc}; check the path") from exc
        self._lock = StoreLock(self.root / ".lock", lock_timeout_s)
        self._record = RecordFile(self.root / RECORD_FILE)

    # --- where things live -------------------------------------------------------------------

    def model_path(self, ref: ModelRef | ModelManifest) -> Path:
        return self.models_dir / ref.name / model_key(ref)

    def manifest_path(self, ref: ModelRef | ModelManifest) -> Path:
        return self.models_dir / ref.name / (model_key(ref) + MANIFEST_SUFFIX)

    def staging_dir(self, manifest: ModelManifest) -> Path:
        """Where the download of ``manifest`` collects its files; kept across restarts for resuming."""
        return self.staging_root / f"{manifest.name}-{model_key(manifest)}"

    @contextmanager
    def stage(self, manifest: ModelManifest) -> Iterator[Path]:
        """The staging directory of ``manifest``, held so a second downloader of the same model fails fast."""
        directory = self.staging_dir(manifest)
        directory.mkdir(parents=True, exist_ok=True)
        lock = directory.with_name(directory.name + ".lock")
        with try_exclusive(lock, f"staging {manifest.name} {manifest.version}"):
            yield directory

    def discard_staging(self, manifest: ModelManifest) -> None:
        """Forget a download in progress (its parts too): the next fetch starts from zero."""
        directory = self.staging_dir(manifest)
        if directory.exists():
            shutil.rmtree(directory)
        directory.with_name(directory.name + ".lock").unlink(missing_ok=True)

    # --- the record ----------------------------------------------------------------------------

    @property
    def record_problem(self) -> str | None:
        """Why the last read of ``active.json`` fell back to its ``.prev`` copy, for status reports."""
        return self._record.problem

    def record(self) -> ActiveRecord:
        with self._lock.hold():
            return self._record.read()

    def active(self) -> InstalledModel | None:
        """The active model, or None when there is none or its files are gone (logged: roll back)."""
        with self._lock.hold():
            ref = self._record.read().active
            if ref is None:
                return None
            model = self._installed(ref)
            if model is None:
                log.error("the active model %s %s is no longer in %s; roll back or install it again", ref.name,
                          ref.version, self.models_dir)
            return model

    def previous(self) -> list[InstalledModel]:
        """Models that served before the active one and are still on disk, most recent first."""
        with self._lock.hold():
            found = (self._installed(ref) for ref in self._record.read().previous)
            return [model for model in found if model is not None]

    # --- models --------------------------------------------------------------------------------

    def get(self, ref: ModelRef) -> InstalledModel | None:
        return self._installed(ref)

    def installed(self) -> list[InstalledModel]:
        """Every complete model on disk (directory and manifest both present), by name then key."""
        models = []
        for manifest_file in sorted(self.models_dir.glob(f"*/*{MANIFEST_SUFFIX}")):
            directory = manifest_file.with_name(manifest_file.name[: -len(MANIFEST_SUFFIX)])
            if not directory.is_dir():
                continue
            try:
                manifest = read_manifest(manifest_file)
            except ManifestError as exc:
                log.warning("ignoring %s: %s", directory, exc)
                continue
            if self.model_path(manifest) == directory:
                models.append(InstalledModel(manifest.ref, directory, manifest_file))
        return models

    def _installed(self, ref: ModelRef) -> InstalledModel | None:
        path, manifest_file = self.model_path(ref), self.manifest_path(ref)
        if path.is_dir() and manifest_file.is_file():
            return InstalledModel(ref, path, manifest_file)
        return None

    def install(self, staged_dir: Path, manifest: ModelManifest) -> InstalledModel:
        """Verify ``staged_dir`` against ``manifest`` and make it a model of the store (not active).

        A directory inside ``staging/`` is moved; any other (a Greengrass artifact, a local
        build) is copied into staging first so the source is never modified. Verification
        runs before the store lock is taken: hashing gigabytes must not block status reads.
        Raises VerificationError when a file differs: nothing is installed and the staged
        directory is deleted, so the next fetch downloads it again instead of trusting it.
        """
        staged_dir = Path(staged_dir)
        if not _inside(staged_dir, self.staging_root):
            staged_dir = self._copy_to_staging(staged_dir, manifest)
        (staged_dir / MANIFEST_FILE).unlink(missing_ok=True)
        try:
            verify_directory(staged_dir, manifest)
        except VerificationError:
            # A file that passed the download's check no longer does (disk corruption) or never was
            # checked: keeping it would make every later fetch trust it again. Start over instead.
            shutil.rmtree(staged_dir, ignore_errors=True)
            log.error("%s failed verification and was deleted; the next fetch starts from scratch", staged_dir)
            raise
        with self._lock.hold():
            existing = self._installed(manifest.ref)
            if existing is not None:
                log.info("%s %s is already installed at %s", manifest.name, manifest.version, existing.path)
                shutil.rmtree(staged_dir)
            else:
                target = self.model_path(manifest)
                target.parent.mkdir(parents=True, exist_ok=True)
                if target.exists():  # a directory left by an interrupted prune: not a model
                    shutil.rmtree(target)
                write_manifest(manifest, self.manifest_path(manifest))
                os.rename(staged_dir, target)
                fsync_dir(target.parent)
                log.info("installed %s %s at %s", manifest.name, manifest.version, target)
            record = self._record.read()
            if manifest.ref != record.active and manifest.ref not in record.staged:
                self._record.write(record.model_copy(update={
                    "staged": [manifest.ref, *record.staged], "event": "install",
                    "reason": f"installed {manifest.name} {manifest.version}",
                }))
            installed = self._installed(manifest.ref)
        assert installed is not None
        return installed

    def _copy_to_staging(self, source: Path, manifest: ModelManifest) -> Path:
        target = self.staging_dir(manifest)
        if target.exists():
            shutil.rmtree(target)
        try:
            shutil.copytree(source, target, ignore=shutil.ignore_patterns(MANIFEST_FILE))
        except (OSError, shutil.Error) as exc:
            raise ModelUpdateError(f"cannot copy {source} into {target}: {exc}") from exc
        return target

    def activate(self, ref: ModelRef, reason: str = "") -> InstalledModel:
        """Make an installed model the active one; the one it replaces becomes the first rollback candidate."""
        with self._lock.hold():
            model = self._installed(ref)
            if model is None:
                raise ModelUpdateError(f"{ref.name} {ref.version} is not installed in {self.root}; install it first")
            record = self._record.read()
            if record.active == ref:
                return model
            previous = [r for r in ([record.active] if record.active else []) + record.previous if r != ref]
            self._record.write(record.model_copy(update={
                "active": ref,
                "previous": previous[:HISTORY_LIMIT],
                "staged": [r for r in record.staged if r != ref],
                "event": "activate",
                "reason": reason or f"activated {ref.name} {ref.version}",
            }))
            log.info("active model: %s %s (%s)", ref.name, ref.version, reason or "activated")
            return model

    def rollback(self, reason: str) -> InstalledModel:
        """Make the most recent previous model still on disk active again; ``reason`` goes in the record."""
        with self._lock.hold():
            record = self._record.read()
            if record.active is None:
                raise ModelUpdateError("there is no active model to roll back from")
            candidates = [ref for ref in record.previous if self._installed(ref) is not None]
            if not candidates:
                raise ModelUpdateError(
                    f"no previous model is installed to roll back to from {record.active.name} "
                    f"{record.active.version}; it stays active"
                )
            target = candidates[0]
            failed = record.active
            self._record.write(record.model_copy(update={
                "active": target,
                "previous": record.previous[record.previous.index(target) + 1:],
                "rolled_back": [failed, *[r for r in record.rolled_back if r != failed]][:HISTORY_LIMIT],
                "event": "rollback",
                "reason": reason,
            }))
            log.warning("rolled back from %s %s to %s %s: %s", failed.name, failed.version, target.name,
                        target.version, reason)
            model = self._installed(target)
            assert model is not None
            return model

    def discard(self, ref: ModelRef, reason: str = "") -> None:
        """Remove an installed model that is not active, e.g. one that failed validation."""
        with self._lock.hold():
            record = self._record.read()
            if record.active == ref:
                raise ModelUpdateError(f"{ref.name} {ref.version} is the active model; activate another first")
            self._remove(ref)
            self._record.write(record.model_copy(update={
                "staged": [r for r in record.staged if r != ref],
                "previous": [r for r in record.previous if r != ref],
                "event": "discard",
                "reason": reason or f"discarded {ref.name} {ref.version}",
            }))

    def prune(self, keep: int = 2) -> list[ModelRef]:
        """Remove models other than the active one, the ``keep`` most recent previous and staged ones."""
        if keep < 0:
            raise ValueError("keep must be >= 0")
        with self._lock.hold():
            record = self._record.read()
            kept_previous = record.previous[:keep]
            protected = {r for r in [record.active, *kept_previous, *record.staged] if r is not None}
            removed = [model.ref for model in self.installed() if model.ref not in protected]
            for ref in removed:
                self._remove(ref)
            self._remove_leftovers()
            if removed or record.previous != kept_previous:
                self._record.write(record.model_copy(update={
                    "previous": kept_previous,
                    "event": "prune",
                    "reason": f"pruned {len(removed)} model(s), keeping {keep} previous",
                }))
            return removed

    def _remove(self, ref: ModelRef) -> None:
        # The manifest goes first: without it the directory is no longer a model, whatever happens next.
        self.manifest_path(ref).unlink(missing_ok=True)
        path = self.model_path(ref)
        if path.exists():
            shutil.rmtree(path)
        log.info("removed %s %s from %s", ref.name, ref.version, self.models_dir)

    def _remove_leftovers(self) -> None:
        """Directories without a manifest (an interrupted removal) and stray temporary files."""
        for directory in self.models_dir.glob("*/*"):
            if directory.is_dir() and _MODEL_DIR.match(directory.name):
                if not directory.with_name(directory.name + MANIFEST_SUFFIX).is_file():
                    shutil.rmtree(directory)
            elif directory.is_file() and directory.name.startswith(".") and directory.name.endswith(".tmp"):
                directory.unlink()


def _inside(path: Path, parent: Path) -> bool:
    try:
        path.resolve().relative_to(parent.resolve())
    except ValueError:
        return False
    return True
