"""Probation: after a new model serves, watch the inference component for a regression.

What counts as a regression, from the inference component's health
(``vla-edge/health/inference``) and its model reports:

* ``inference_errored``: its health says ERRORED (a failed inference puts it there);
* ``inference_errors``: its ``inference_errors`` counter grew since the switch;
* ``chunks_stopped``: chunks were being published before the switch, and the
  ``published.action_chunk`` counter has not grown for ``stall_s`` since;
* ``inference_silent``: its health, which it publishes every second, has not arrived
  for ``silent_s`` (the process or its container died);
* ``inference_restarted``: it announced serving on start (a report without a request
  id): it restarted, whatever it now serves, and the previous model is no longer loaded
  beside the new one.

Health is only judged when it was seen before the switch: without it (an inference
component that does not publish health) only reports can reveal a regression, and that
is logged when the probation starts. Times come from the caller's clock, so tests step them.
"""

from __future__ import annotations

from dataclasses import dataclass

from vla_edge import messages

SILENT_S = 5.0
"""Health missing this long means the inference component is gone (it publishes every second)."""
STALL_S = 10.0
"""No new chunk for this long, when chunks flowed before the switch, means the model does not work."""
CHUNKS = "published.action_chunk"
ERRORS = "inference_errors"


@dataclass(frozen=True)
class Verdict:
    passed: bool
    reason: str = ""
    detail: str = ""


@dataclass
class HealthBaseline:
    """What the inference component's health looked like before the switch."""

    seen_at: float | None = None
    chunks: int | None = None
    errors: int = 0
    chunk_growth_at: float | None = None
    """When the chunk counter last grew: chunks "flowed before the switch" when that was recent."""

    def observe(self, health: messages.ComponentHealth, now: float) -> None:
        chunks = health.counters.get(CHUNKS, 0)
        if self.chunks is not None and chunks > self.chunks:
            self.chunk_growth_at = now
        elif self.chunks is not None and chunks < self.chunks:  # restarted: counting starts again
            self.chunk_growth_at = None
        self.seen_at, self.chunks, self.errors = now, chunks, health.counters.get(ERRORS, 0)


@dataclass
class Probation:
    """One probation of ``model``, started at ``started`` (caller's clock) for ``duration_s``."""

    model: messages.ModelRef
    started: float
    duration_s: float
    baseline: HealthBaseline
    silent_s: float = SILENT_S
    stall_s: float = STALL_S
    _last_health: float | None = None
    _chunks: int | None = None
    _last_chunk_at: float = 0.0
    _restarted: messages.ModelRef | None = None
    _errored: str | None = None
    _errors: int = 0

    def __post_init__(self) -> None:
        self._last_health = self.baseline.seen_at
        self._chunks = self.baseline.chunks
        self._errors = self.baseline.errors
        self._last_chunk_at = self.started

    @property
    def watches_health(self) -> bool:
        return self.baseline.seen_at is not None

    @property
    def chunks_flowed(self) -> bool:
        growth = self.baseline.chunk_growth_at
        return growth is not None and self.started - growth <= self.stall_s

    def remaining(self, now: float) -> float:
        return max(0.0, self.started + self.duration_s - now)

    def on_health(self, health: messages.ComponentHealth, now: float) -> None:
        self._last_health = now
        chunks = health.counters.get(CHUNKS, 0)
        if self._chunks is None or chunks > self._chunks:
            self._last_chunk_at = now
        self._chunks = chunks
        self._errors = max(self._errors, health.counters.get(ERRORS, 0))
        if health.state == "ERRORED" and self._errored is None:
            self._errored = health.detail or "no detail given"

    def on_report(self, report: messages.ModelReport) -> None:
        if report.request_id is None and report.state == "serving" and self._restarted is None:
            self._restarted = report.model

    def check(self, now: float) -> Verdict | None:
        """A regression, a pass once the time is up, or None while the probation goes on."""
        name = f"{self.model.name} {self.model.version}"
        if self._restarted is not None:
            return Verdict(False, "inference_restarted",
                           f"the inference component restarted during the probation of {name} (it came back "
                           f"serving {self._restarted.name} {self._restarted.version})")
        if self._errored is not None:
            return Verdict(False, "inference_errored", f"the inference component is ERRORED with {name}: {self._errored}")
        if self._errors > self.baseline.errors:
            return Verdict(False, "inference_errors",
                           f"{self._errors - self.baseline.errors} inference error(s) with {name} since it serves")
        if self.watches_health:
            assert self._last_health is not None
            if now - self._last_health > self.silent_s:
                return Verdict(False, "inference_silent",
                               f"no health from the inference component for {now - self._last_health:.0f} s with {name}")
            if self.chunks_flowed and now - self._last_chunk_at > self.stall_s:
                return Verdict(False, "chunks_stopped",
                               f"{name} published no action chunk for {now - self._last_chunk_at:.0f} s; chunks "
                               "flowed before the switch")
        if now >= self.started + self.duration_s:
            return Verdict(True, detail=f"{name} passed its {self.duration_s:.0f} s probation")
        return None
