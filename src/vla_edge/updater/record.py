"""``active.json``: which model serves, which served before, and why the last change happened.

The record is the one thing that decides what runs after a restart, so it is written
atomically (see :mod:`vla_edge.updater._fs`) and the last good version is kept beside
it as ``active.json.prev`` before each write. A record that cannot be read (a disk
error, someone's hand edit) is reported and the ``.prev`` copy is used instead; only
when both are unreadable does the store refuse to guess.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from vla_edge.errors import ModelUpdateError
from vla_edge.messages import ModelRef
from vla_edge.updater._fs import atomic_write_bytes

log = logging.getLogger(__name__)

RECORD_FILE = "active.json"
PREVIOUS_SUFFIX = ".prev"
HISTORY_LIMIT = 20
"""Previous models remembered for rollback; prune() usually keeps far fewer on disk."""

Event = Literal["none", "install", "activate", "rollback", "discard", "prune"]


class ActiveRecord(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal[1] = 1
    active: ModelRef | None = None
    previous: list[ModelRef] = Field(default_factory=list)
    """Models that served before the active one, most recent first: rollback candidates."""
    staged: list[ModelRef] = Field(default_factory=list)
    """Installed (verified) but never activated yet, e.g. still being validated: prune spares them."""
    rolled_back: list[ModelRef] = Field(default_factory=list)
    """Models that were active and were rolled back from, most recent first."""
    event: Event = "none"
    reason: str = ""
    updated: float = 0.0


class RecordFile:
    """Reads and writes one ``active.json`` with its ``.prev`` copy; callers hold the store lock."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.backup = self.path.with_name(self.path.name + PREVIOUS_SUFFIX)
        self.problem: str | None = None
        """Why the last read had to fall back to the ``.prev`` copy (None when active.json was fine)."""

    def read(self) -> ActiveRecord:
        try:
            record = self._parse(self.path)
        except FileNotFoundError:
            if not self.backup.exists():
                self.problem = None
                return ActiveRecord()
            problem = f"{self.path} is missing although {self.backup} exists"
        except ModelUpdateError as exc:
            problem = str(exc)
        else:
            self.problem = None
            return record
        try:
            fallback = self._parse(self.backup)
        except (FileNotFoundError, ModelUpdateError) as exc:
            raise ModelUpdateError(
                f"{problem}; the last good copy {self.backup} cannot be used either ({exc}). Which model is "
                f"active is unknown: restore {self.path} from a backup, or delete both files to start with no "
                "active model"
            ) from exc
        if self.problem != problem:
            log.error("%s; using the last good copy %s (active %s)", problem, self.backup,
                      fallback.active.name + " " + fallback.active.version if fallback.active else "none")
        self.problem = problem
        return fallback

    def write(self, record: ActiveRecord) -> None:
        """Keep the current good record as ``.prev``, then replace the record; both steps atomic."""
        record = record.model_copy(update={"updated": time.time()})
        try:
            current = self.path.read_bytes()
        except FileNotFoundError:
            current = None
        except OSError as exc:
            raise ModelUpdateError(f"cannot read {self.path} before replacing it: {exc}") from exc
        try:
            if current is not None and _valid(current):
                atomic_write_bytes(self.backup, current)
            atomic_write_bytes(self.path, (json.dumps(record.model_dump(mode="json"), indent=2) + "\n").encode())
        except OSError as exc:
            raise ModelUpdateError(f"cannot write {self.path}: {exc}; check free space and permissions") from exc
        self.problem = None

    @staticmethod
    def _parse(path: Path) -> ActiveRecord:
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise
        except OSError as exc:
            raise ModelUpdateError(f"cannot read {path}: {exc}") from exc
        try:
            return ActiveRecord.model_validate_json(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "record"
            raise ModelUpdateError(f"{path} is corrupt ({where}: {first['msg']})") from exc


def _valid(data: bytes) -> bool:
    try:
        ActiveRecord.model_validate_json(data)
    except ValidationError:
        return False
    return True
