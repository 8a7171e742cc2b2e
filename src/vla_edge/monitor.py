"""Watches the suite's traffic read-only and turns it into a status line and a summary.

It subscribes like any other client (under ``vla-edge up`` it connects to the local
core as the read-only ``vla-edge.Monitor`` identity), so what it reports is what
actually crossed the bus.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vla_edge import messages
from vla_edge.bus.base import Bus
from vla_edge.components.base import Counters, MessageRouter

log = logging.getLogger(__name__)


@dataclass
class _Rate:
    """Events per second between two status lines."""

    last_value: float = 0.0
    last_time: float = field(default_factory=time.monotonic)

    def update(self, value: float) -> float:
        now = time.monotonic()
        elapsed = max(now - self.last_time, 1e-6)
        rate = (value - self.last_value) / elapsed
        self.last_value, self.last_time = value, now
        return max(rate, 0.0)


class SuiteMonitor:
    def __init__(self, bus: Bus) -> None:
        self.counters = Counters()
        self.router = MessageRouter(bus, self.counters, log)
        self._lock = threading.Lock()
        self.health: dict[str, messages.ComponentHealth] = {}
        self.model: messages.ModelStatus | None = None
        self.chunks = 0
        self.control_ticks = 0
        self.actions_applied = 0
        self._actuator_base = 0
        self._last_applied = 0
        self.latencies_ms: list[float] = []
        self.started = time.monotonic()
        self._rates = {key: _Rate() for key in ("frames", "chunks", "ticks")}

    def start(self) -> None:
        self.router.subscribe(messages.TOPIC_HEALTH_ALL, self._on_health, messages.ComponentHealth)
        self.router.subscribe(messages.TOPIC_JOINT_STATE, self._on_joint_state, messages.JointState)
        self.router.subscribe(messages.TOPIC_ACTION_CHUNK, self._on_chunk, messages.ActionChunk)
        self.router.subscribe(messages.TOPIC_MODEL_STATUS, self._on_model, messages.ModelStatus)

    def close(self) -> None:
        self.router.close()

    def _on_health(self, message: messages.ComponentHealth) -> None:
        with self._lock:
            self.health[message.component] = message

    def _on_model(self, message: messages.ModelStatus) -> None:
        with self._lock:
            self.model = message

    def _on_chunk(self, _message: messages.ActionChunk) -> None:
        with self._lock:
            self.chunks += 1

    def _on_joint_state(self, message: messages.JointState) -> None:
        with self._lock:
            self.control_ticks += 1
            if message.actions_applied < self._last_applied:  # the actuator restarted: keep counting
                self._actuator_base += self._last_applied
            self._last_applied = message.actions_applied
            self.actions_applied = self._actuator_base + message.actions_applied
            if message.latency_ms is not None:
                self.latencies_ms.append(message.latency_ms)

    def frames(self) -> int:
        with self._lock:
            camera = self.health.get("camera")
        return camera.counters.get("published.frame_ready", 0) if camera else 0

    def components_running(self, names: list[str]) -> bool:
        with self._lock:
            return all(name in self.health and self.health[name].state == "RUNNING" for name in names)

    def status_line(self) -> str:
        frames = self.frames()
        with self._lock:
            chunks, ticks = self.chunks, self.control_ticks
            recent = self.latencies_ms[-30:]
            errored = sorted(name for name, h in self.health.items() if h.state == "ERRORED")
        latency = f"{np.median(recent):6.1f} ms" if recent else "   n/a   "
        line = (
            f"frames/s {self._rates['frames'].update(frames):5.1f} | chunks/s {self._rates['chunks'].update(chunks):4.1f}"
            f" | ticks/s {self._rates['ticks'].update(ticks):5.1f} | capture->servo {latency}"
            f" | actions {self.actions_applied}"
        )
        return line + (f" | ERRORED: {', '.join(errored)}" if errored else "")

    def summary(self) -> dict[str, Any]:
        frames = self.frames()
        with self._lock:
            latencies = np.array(self.latencies_ms, dtype=np.float64)
            rejected: dict[str, int] = {}
            for name, health in self.health.items():
                for key, value in health.counters.items():
                    if key.startswith("rejected.") and value:
                        rejected[f"{name}.{key.removeprefix('rejected.')}"] = value
            return {
                "frames": frames,
                "chunks": self.chunks,
                "control_ticks": self.control_ticks,
                "actions_applied": self.actions_applied,
                "latency_ms_p50": _percentile(latencies, 50),
                "latency_ms_p99": _percentile(latencies, 99),
                "latency_samples": int(latencies.size),
                "rejected": rejected,
                "health": {name: h.state for name, h in sorted(self.health.items())},
                "model": self.model.model.model_dump() if self.model and self.model.model else None,
            }


def _percentile(values: np.ndarray, q: float) -> float | None:
    return round(float(np.percentile(values, q)), 2) if values.size else None
