"""One writer at a time on a model store: a thread lock inside a process, ``flock`` across processes.

The model-updater component and an operator's ``vla-edge`` command may touch the same
store at once (and the component has several threads). ``flock`` on a lock file is
released by the kernel when a process dies, so a crashed updater never leaves the
store locked. flock locks belong to an open file, so every acquisition opens the file
anew: two stores on one root in one process exclude each other too.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from vla_edge.errors import ModelUpdateError

log = logging.getLogger(__name__)


class StoreLock:
    """Exclusive, re-entrant within one thread, blocking up to ``timeout_s`` (None: forever)."""

    def __init__(self, path: Path, timeout_s: float | None = 60.0) -> None:
        self.path = Path(path)
        self.timeout_s = timeout_s
        self._thread_lock = threading.RLock()
        self._depth = 0
        self._fd: int | None = None

    @contextmanager
    def hold(self) -> Iterator[None]:
        if not self._thread_lock.acquire(timeout=-1 if self.timeout_s is None else self.timeout_s):
            raise ModelUpdateError(f"the model store {self.path.parent} is busy in this process; try again")
        try:
            if self._depth == 0:
                self._fd = _acquire(self.path, self.timeout_s)
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
                if self._depth == 0 and self._fd is not None:
                    os.close(self._fd)  # closing the file releases the flock
                    self._fd = None
        finally:
            self._thread_lock.release()


def _acquire(path: Path, timeout_s: float | None) -> int:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    delay = 0.01
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                os.close(fd)
                raise ModelUpdateError(f"cannot lock {path}: {exc}") from exc
        if deadline is not None and time.monotonic() >= deadline:
            os.close(fd)
            raise ModelUpdateError(
                f"another process has held {path} for over {timeout_s:.0f} s; check for a stuck vla-edge updater"
            )
        time.sleep(delay)
        delay = min(delay * 2, 0.2)


@contextmanager
def try_exclusive(path: Path, what: str) -> Iterator[None]:
    """Hold ``path`` exclusively or fail at once: for work that must never run twice (one download per model)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                raise ModelUpdateError(f"{what} is already in progress (lock {path} is held); wait for it") from exc
            raise ModelUpdateError(f"cannot lock {path}: {exc}") from exc
        yield
    finally:
        os.close(fd)

