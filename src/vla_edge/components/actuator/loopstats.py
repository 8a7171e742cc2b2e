"""Figures of the control loop for the health topic: tick rate and duration, plan ahead, starvation.

Kept apart from the loop so the loop reads as what it does to the arm; these only watch.
"""

from __future__ import annotations

import collections
import logging
import time

from vla_edge.components.base import Counters

STARVED_WINDOW_S = 1.0
"""A tick without a plan counts as starved only this soon after the last executed action."""


class LoopStats:
    """Tick timing, plan-ahead and starvation of the actuator's control loop (control thread only)."""

    def __init__(self, counters: Counters, log: logging.Logger) -> None:
        self.counters = counters
        self.log = log
        self.tick_starts: collections.deque[float] = collections.deque(maxlen=256)
        self.tick_ms = 0.0
        self.tick_ms_max = 0.0
        self.ahead_s = 0.0
        self.ahead_s_min: float | None = None
        self.latency_ms: float | None = None
        self.last_applied: float | None = None
        self.actions_applied = 0
        self._starving = False

    def tick_started(self, started: float) -> None:
        self.tick_starts.append(started)

    def tick_ended(self, started: float) -> None:
        self.tick_ms = (time.monotonic() - started) * 1000.0
        self.tick_ms_max = max(self.tick_ms_max, self.tick_ms)

    def plan_ahead(self, ahead_s: float) -> None:
        self.ahead_s = ahead_s
        self.ahead_s_min = ahead_s if self.ahead_s_min is None else min(self.ahead_s_min, ahead_s)

    def applied(self, now: float) -> None:
        self._starving = False
        self.last_applied = now
        self.actions_applied += 1
        self.counters.add("actions_applied")

    def check_starved(self, now: float, ahead_s: float, torque_on: bool) -> None:
        """Count a tick where the plan ran dry while the arm was being driven.

        A tick with no action while later actions are queued is normal when ``controlHz`` is
        faster than the policy's action rate (the goal simply stays), so it does not count.
        """
        recent = self.last_applied is not None and now - self.last_applied <= STARVED_WINDOW_S
        if not (torque_on and ahead_s <= 0.0 and recent):
            return
        self.counters.add("starved_ticks")
        if not self._starving:
            self._starving = True
            self.log.info("action queue ran dry: no action due and none planned (chunks arrive too late?)")

    def metrics(self) -> dict[str, float | None]:
        """Figures since the previous call (maxima and minima restart after each report)."""
        starts = list(self.tick_starts)
        span = starts[-1] - starts[0] if len(starts) > 1 else 0.0
        figures: dict[str, float | None] = {
            "ticks_per_s": (len(starts) - 1) / span if span > 0 else None,
            "tick_ms": self.tick_ms,
            "tick_ms_max": self.tick_ms_max,
            "latency_ms": self.latency_ms,
            "queue_ahead_s": self.ahead_s,
            "queue_ahead_s_min": self.ahead_s_min,
        }
        self.tick_ms_max = 0.0
        self.ahead_s_min = None
        return figures
