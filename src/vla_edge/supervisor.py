"""Process supervision with the Greengrass nucleus's restart rules.

Each component runs as its own process. A process that exits non-zero is ERRORED and
restarted; after ``max_errors`` error exits it is BROKEN and left alone, as the nucleus
does, so a component that cannot start does not crash-loop. A process that exits 0 on
its own is FINISHED. ``stop()`` sends SIGTERM (components hold the arm and turn torque
off on SIGTERM), waits, and only then kills.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

log = logging.getLogger(__name__)

ProcessState = Literal["NEW", "RUNNING", "ERRORED", "BROKEN", "FINISHED", "STOPPED"]
DEFAULT_MAX_ERRORS = 3


@dataclass(frozen=True)
class ProcessSpec:
    name: str
    argv: Sequence[str]
    env: Mapping[str, str] = field(default_factory=dict)
    log_path: Path | None = None


@dataclass
class ProcessStatus:
    name: str
    state: ProcessState = "NEW"
    starts: int = 0
    errors: int = 0
    exit_codes: list[int] = field(default_factory=list)

    @property
    def restarts(self) -> int:
        return max(0, self.starts - 1)

    def snapshot(self) -> "ProcessStatus":
        return ProcessStatus(self.name, self.state, self.starts, self.errors, list(self.exit_codes))


def terminate(process: subprocess.Popen[Any], timeout_s: float) -> int | None:
    """SIGTERM, wait up to ``timeout_s``, then kill. Returns the exit code, or None if it had to be killed."""
    if process.poll() is not None:
        return process.returncode
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        log.warning("pid %d did not stop within %.0f s of SIGTERM; killing it", process.pid, timeout_s)
        process.kill()
        process.wait()
        return None


class ManagedProcess:
    def __init__(self, spec: ProcessSpec, max_errors: int, restart_delay_s: float) -> None:
        self.spec = spec
        self.status = ProcessStatus(spec.name)
        self._max_errors = max_errors
        self._restart_delay_s = restart_delay_s
        self._process: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None
        self._restart_at: float | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def start(self) -> None:
        if self.spec.log_path is not None:
            self.spec.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log_file = self.spec.log_path.open("ab")
        env = {**os.environ, **self.spec.env}
        self._process = subprocess.Popen(  # noqa: S603 - argv is built by us, never by a shell
            list(self.spec.argv),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file or subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches the supervisor, which stops children in order
        )
        self.status.starts += 1
        self.status.state = "RUNNING"
        self._restart_at = None
        log.info("started %s (pid %d, start %d)", self.spec.name, self._process.pid, self.status.starts)

    def poll(self) -> None:
        """Observe an exit and apply the restart rules; call regularly."""
        if self.status.state == "ERRORED" and self._restart_at is not None and time.monotonic() >= self._restart_at:
            self._close_log()
            self.start()
            return
        if self._process is None or self.status.state != "RUNNING":
            return
        code = self._process.poll()
        if code is None:
            return
        self.status.exit_codes.append(code)
        if code == 0:
            self.status.state = "FINISHED"
            log.info("%s finished (exit 0)", self.spec.name)
            return
        self.status.errors += 1
        if self.status.errors >= self._max_errors:
            self.status.state = "BROKEN"
            log.error(
                "%s is BROKEN after %d errors (exit codes %s); see %s",
                self.spec.name,
                self.status.errors,
                self.status.exit_codes,
                self.spec.log_path or "its output",
            )
            return
        self.status.state = "ERRORED"
        self._restart_at = time.monotonic() + self._restart_delay_s
        log.warning("%s exited with %d (error %d of %d); restarting", self.spec.name, code, self.status.errors, self._max_errors)

    def terminate(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)

    def wait_or_kill(self, deadline: float) -> None:
        if self._process is None:
            return
        try:
            self._process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop after SIGTERM; killing it", self.spec.name)
            self._process.kill()
            self._process.wait()
        if self.status.state in ("RUNNING", "ERRORED"):
            self.status.state = "STOPPED"
        self._close_log()

    def _close_log(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None


class Supervisor:
    """Starts processes, keeps them to the restart rules on a background thread, stops them in reverse order."""

    def __init__(
        self,
        specs: Sequence[ProcessSpec],
        max_errors: int = DEFAULT_MAX_ERRORS,
        restart_delay_s: float = 0.5,
        on_change: Callable[[ProcessStatus], None] | None = None,
    ) -> None:
        self.processes = [ManagedProcess(spec, max_errors, restart_delay_s) for spec in specs]
        self._on_change = on_change
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="supervisor", daemon=True)

    def start(self) -> None:
        with self._lock:
            for process in self.processes:
                process.start()
        self._thread.start()

    def statuses(self) -> dict[str, ProcessStatus]:
        with self._lock:
            return {p.spec.name: p.status.snapshot() for p in self.processes}

    def _watch(self) -> None:
        while not self._stop.wait(0.1):
            with self._lock:
                for process in self.processes:
                    before = (process.status.state, process.status.starts)
                    process.poll()
                    if self._on_change and (process.status.state, process.status.starts) != before:
                        self._on_change(process.status.snapshot())

    def stop(self, timeout_s: float = 10.0) -> dict[str, ProcessStatus]:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        with self._lock:
            for process in reversed(self.processes):
                process.terminate()
            deadline = time.monotonic() + timeout_s
            for process in reversed(self.processes):
                process.wait_or_kill(deadline)
        return self.statuses()
