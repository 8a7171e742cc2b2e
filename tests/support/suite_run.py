"""``vla-edge up`` as a test drives it: the suite in its own processes, the bus heard as the Monitor.

:class:`SuiteRun` starts ``vla-edge up`` against a test-owned arm emulator, listens with the real
SDK client as the read-only ``vla-edge.Monitor`` identity (:class:`BusLog` keeps everything it
hears, each message with the time it arrived), deploys with ``vla-edge core deploy`` as a person
would, and stops the suite with SIGINT, as Ctrl-C does. Nothing here reaches into a component.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from support import wait_for
from vla_edge import messages
from vla_edge.bus.base import Payload
from vla_edge.errors import MessageError


@dataclass(frozen=True)
class Heard:
    """One message and when it arrived here (``time.monotonic()``)."""

    at: float
    message: Any


class BusLog:
    """Everything the Monitor hears on the topics a model rollout touches."""

    TOPICS = (messages.TOPIC_ACTION_CHUNK, messages.TOPIC_JOINT_STATE, messages.TOPIC_MODEL_STATUS,
              messages.TOPIC_MODEL_REPORT, messages.TOPIC_HEALTH_ALL)

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.chunk_models: dict[str, messages.ModelRef] = {}
        self.states: list[messages.JointState] = []
        self.statuses: list[Heard] = []
        self.reports: list[Heard] = []
        self.health: dict[str, list[messages.ComponentHealth]] = {}

    def on_message(self, topic: str, payload: Payload) -> None:
        try:
            message = messages.decode(topic, payload)
        except MessageError:
            return
        now = time.monotonic()
        with self.lock:
            if isinstance(message, messages.ActionChunk):
                self.chunk_models[message.chunk_id] = message.model
            elif isinstance(message, messages.JointState):
                self.states.append(message)
            elif isinstance(message, messages.ModelStatus):
                self.statuses.append(Heard(now, message))
            elif isinstance(message, messages.ModelReport):
                self.reports.append(Heard(now, message))
            elif isinstance(message, messages.ComponentHealth):
                self.health.setdefault(message.component, []).append(message)

    # --- reading (any thread) ---------------------------------------------------------------------

    def model_of(self, state: messages.JointState) -> messages.ModelRef | None:
        """The model whose chunk this tick executed (None: holding, or a chunk not heard)."""
        with self.lock:
            return self.chunk_models.get(state.chunk_id) if state.chunk_id else None

    def states_since(self, t: float) -> list[messages.JointState]:
        """JointStates stamped (by the actuator, wall clock) at or after ``t``."""
        with self.lock:
            return [s for s in self.states if s.t >= t]

    def status_list(self) -> list[messages.ModelStatus]:
        with self.lock:
            return [h.message for h in self.statuses]

    def latest_health(self, component: str) -> messages.ComponentHealth | None:
        with self.lock:
            history = self.health.get(component)
            return history[-1] if history else None

    def health_after(self, component: str, t: float) -> bool:
        """Whether a health report of ``component`` stamped after wall time ``t`` has arrived."""
        health = self.latest_health(component)
        return health is not None and health.t > t

    def counter(self, component: str, name: str) -> int:
        health = self.latest_health(component)
        return 0 if health is None else health.counters.get(name, 0)

    def counter_at(self, component: str, name: str, t: float, later: bool = False) -> int | None:
        """``name`` in the last health report stamped before wall time ``t`` (``later``: the first after it)."""
        with self.lock:
            history = list(self.health.get(component, ()))
        chosen = (next((h for h in history if h.t > t), None) if later
                  else next((h for h in reversed(history) if h.t < t), None))
        return None if chosen is None else chosen.counters.get(name, 0)

    def wait_status(self, predicate: Callable[[messages.ModelStatus], bool], after: int = 0,
                    timeout: float = 60.0) -> messages.ModelStatus:
        """The first status (from index ``after`` on) that ``predicate`` accepts."""
        def found() -> messages.ModelStatus | None:
            with self.lock:
                return next((h.message for h in self.statuses[after:] if predicate(h.message)), None)
        return wait_for(found, timeout=timeout, interval=0.1)  # type: ignore[return-value]


def executes(log: BusLog, version: str, ticks: int, since: float | None = None) -> Callable[[], bool]:
    """A condition: ``ticks`` control ticks (or more) executed chunks of model ``version``, since wall time ``since``."""

    def condition() -> bool:
        states = log.states_since(since) if since is not None else log.states_since(0.0)
        return sum(1 for s in states if (m := log.model_of(s)) is not None and m.version == version) >= ticks
    condition.__name__ = f"{ticks} ticks of model version {version}"
    return condition


class SuiteRun:
    """``vla-edge up`` with the given arguments; use as a context manager."""

    def __init__(self, run_dir: Path, serial_port: str, stderr_path: Path, extra_args: Sequence[str]) -> None:
        self.run_dir = run_dir
        self.stderr_path = stderr_path
        self.log = BusLog()
        self.argv = [sys.executable, "-m", "vla_edge", "up", "--serial-port", serial_port, "--json",
                     "--run-dir", str(run_dir), *extra_args]
        self.process: subprocess.Popen[bytes] | None = None
        self.summary: dict[str, Any] | None = None
        self._bus: Any = None

    def __enter__(self) -> Self:
        from vla_edge.bus.ipc import GreengrassIpcBus
        from vla_edge.core.server import component_environment

        self._stderr = self.stderr_path.open("wb")
        self.process = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=self._stderr)
        process = self.process
        wait_for(lambda: (self.run_dir / "core.json").is_file() or process.poll() is not None, timeout=60)
        assert process.poll() is None, f"vla-edge up exited at start:\n{self.stderr_tail()}"
        self._bus = GreengrassIpcBus.connect(environment=component_environment(self.run_dir, "vla-edge.Monitor"))
        for topic in BusLog.TOPICS:
            self._bus.subscribe(topic, self.log.on_message)
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.stop()
        finally:
            if self._bus is not None:
                self._bus.close()
            self._stderr.close()

    def stop(self, timeout: float = 60.0) -> int:
        """SIGINT (Ctrl-C), then the JSON summary; returns the exit code."""
        process = self.process
        assert process is not None
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
        try:
            stdout, _ = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            stdout, _ = process.communicate()
        if self.summary is None and stdout.strip():
            self.summary = json.loads(stdout)
        return process.returncode

    def stderr_tail(self, chars: int = 6000) -> str:
        return self.stderr_path.read_text(errors="replace")[-chars:]

    def component_log(self, short: str, chars: int = 4000) -> str:
        path = self.run_dir / "logs" / f"{short}.log"
        return path.read_text(errors="replace")[-chars:] if path.is_file() else f"(no {path})"

    def diagnosis(self) -> str:
        """What a failure message needs: how far behind the bus log is, and the components' log tails."""
        with self.log.lock:
            last = self.log.states[-1].t if self.log.states else None
            heard = len(self.log.states)
        lag = "no JointState heard" if last is None else f"last JointState stamped {time.time() - last:.2f} s ago"
        parts = [f"--- bus log: {heard} JointStates, {lag} ---"]
        parts += [f"--- {short}.log ---\n{self.component_log(short)}" for short in ("model_updater", "inference",
                                                                                 "actuator")]
        return "\n".join(parts)

    # --- deploying, as a person would -------------------------------------------------------------

    def deploy_command(self, update_config: dict[str, Any] | None = None, *args: str) -> list[str]:
        command = [sys.executable, "-m", "vla_edge", "core", "deploy", "--run-dir", str(self.run_dir), "--json", *args]
        if update_config is not None:
            command += ["--update-config", json.dumps(update_config)]
        return command

    def deploy(self, update_config: dict[str, Any] | None = None, *args: str, timeout: float = 90.0) -> dict[str, Any]:
        """Run ``vla-edge core deploy`` to the end; its JSON outcome (the exit code under ``"exit"``)."""
        done = subprocess.run(self.deploy_command(update_config, *args), capture_output=True, text=True,
                              timeout=timeout, check=False)
        assert done.stdout.strip(), f"vla-edge core deploy printed nothing (exit {done.returncode}): {done.stderr}"
        return {**json.loads(done.stdout), "exit": done.returncode}

    def kill_component(self, module: str) -> int:
        """SIGKILL the component process of ``vla-edge up`` that runs ``module`` (a crash, as the OOM
        killer would do it); returns its pid. The supervisor restarts it."""
        assert self.process is not None
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue  # gone meanwhile
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            if parent == self.process.pid and module.encode() in argv:
                os.kill(int(entry.name), signal.SIGKILL)
                return int(entry.name)
        raise AssertionError(f"no process of vla-edge up (pid {self.process.pid}) runs {module}")

    def publish_as(self, component: str, message: messages.Message) -> None:
        """Publish one message with ``component``'s identity (it must be granted the topic)."""
        from vla_edge.bus.ipc import GreengrassIpcBus
        from vla_edge.core.server import component_environment

        with GreengrassIpcBus.connect(environment=component_environment(self.run_dir, component)) as bus:
            bus.publish(*messages.encode(message))
