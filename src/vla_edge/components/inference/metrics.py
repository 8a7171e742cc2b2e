"""Figures the inference component reports on its health topic.

``queue_depth_s`` / ``queue_depth_actions``
    When a chunk is published: how much of the previously published chunk was still
    ahead (actions meant for now or later). This is how close the actuator came to running
    out of plan; 0 means it had already run out (counted as ``queue_starved``).
    ``queue_depth_min_s`` is the smallest of the recent ones.
``chunks_per_s``
    Chunks published per second over the last :data:`RATE_WINDOW_S` seconds (over the
    time since the first of them while the component has run for less than that).
"""

from __future__ import annotations

import math
import threading
from collections import deque

import numpy as np

from vla_edge import messages

LATENCY_WINDOW = 256
RATE_WINDOW_S = 10.0


class InferenceMetrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._latencies_ms: deque[float] = deque(maxlen=LATENCY_WINDOW)
        self._depths_s: deque[float] = deque(maxlen=LATENCY_WINDOW)
        self._published: deque[float] = deque()
        self._first_published: float | None = None
        self._previous: messages.ActionChunk | None = None
        self.observation_age_ms: float | None = None
        self.joint_state_age_ms: float | None = None
        self.queue_depth_actions: int | None = None
        self.warmup_ms: list[float] = []

    def inference(self, latency_ms: float, observation_age_ms: float, joint_state_age_ms: float) -> None:
        with self._lock:
            self._latencies_ms.append(latency_ms)
            self.observation_age_ms = observation_age_ms
            self.joint_state_age_ms = joint_state_age_ms

    def published(self, chunk: messages.ActionChunk, t: float) -> bool:
        """Record a published chunk; True when the previous chunk had no action left (the actuator starved)."""
        with self._lock:
            previous, self._previous = self._previous, chunk
            self._published.append(t)
            if self._first_published is None:
                self._first_published = t
            while self._published and self._published[0] <= t - RATE_WINDOW_S:
                self._published.popleft()
            if previous is None:
                return False
            count = len(previous.actions)
            passed = max(0, math.ceil((t - previous.t_start) / previous.dt - 1e-9))
            self.queue_depth_actions = max(0, count - passed)
            self._depths_s.append(max(0.0, previous.t_start + count * previous.dt - t))
            return self.queue_depth_actions == 0

    def chunks_per_s(self, now: float) -> float | None:
        with self._lock:
            recent = [t for t in self._published if t > now - RATE_WINDOW_S]
            first = self._first_published
        if first is None:
            return None
        if now - first >= RATE_WINDOW_S:
            return len(recent) / RATE_WINDOW_S
        if len(recent) < 2:
            return None
        return (len(recent) - 1) / (recent[-1] - recent[0])

    def as_dict(self, now: float) -> dict[str, float | None]:
        with self._lock:
            latencies = list(self._latencies_ms)
            depths = list(self._depths_s)
            observation_age, joint_age = self.observation_age_ms, self.joint_state_age_ms
            depth_actions = self.queue_depth_actions
            warmup = list(self.warmup_ms)
        p50 = p99 = None
        if latencies:
            p50, p99 = (float(v) for v in np.percentile(latencies, [50, 99]))
        return {
            "inference_latency_p50_ms": p50,
            "inference_latency_p99_ms": p99,
            "chunks_per_s": self.chunks_per_s(now),
            "observation_age_ms": observation_age,
            "joint_state_age_ms": joint_age,
            "queue_depth_s": depths[-1] if depths else None,
            "queue_depth_actions": None if depth_actions is None else float(depth_actions),
            "queue_depth_min_s": min(depths) if depths else None,
            "warmup_first_ms": warmup[0] if warmup else None,
            "warmup_last_ms": warmup[-1] if warmup else None,
        }
