"""One rollout: from a desired model to the inference component serving it, or to a clean failure.

The steps, each visible on the status topic::

    staging    manifest -> fetch into the store's staging (progress %) -> ModelStore.install
               (verified) -> ModelCommand stage -> ModelReport staged
               [failed/insufficient_memory: switching with hold=true, stage again with allow_unload]
    switching  model = the serving one, next_model = the new one -> ModelCommand activate
               -> ModelReport serving (the new model's first chunk is out)

What the rollout leaves on failure: the model that served keeps serving (if the inference
component may have switched or unloaded it, it is told to serve it again), the new model is
unloaded and removed from the store (a staged download that failed *before* install stays for
the next fetch to resume, as :mod:`vla_edge.updater.transfer` decides), and the store's record is
untouched: recording the new model as active is the orchestrator's step, after ``serving``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from vla_edge import messages
from vla_edge.components.base import Counters
from vla_edge.components.model_updater.channel import TERMINAL, InferenceChannel
from vla_edge.components.model_updater.config import ModelSpec, ModelUpdaterConfig
from vla_edge.components.model_updater.sources import ModelSources
from vla_edge.errors import ModelUpdateError, VlaEdgeError
from vla_edge.updater.manifest import ModelManifest
from vla_edge.updater.store import InstalledModel, ModelStore

PROGRESS_EVERY_S = 1.0
"""Download progress goes on the status topic at most this often."""
ANNOUNCE_WAIT_S = 30.0
"""Before staging: how long a rollout waits for a silent inference component to report (then it is retried)."""
TERMINAL_DISCARD = TERMINAL["discard"]
PROBE_EVERY_S = 2.0
"""While waiting for it: how often a harmless ``discard`` of the new model asks a running one to answer."""
TRANSIENT = frozenset({"inference_restarted", "inference_unavailable"})
"""Failure reasons that say nothing about the model: the rollout is tried again after a backoff."""
Phase = Literal["idle", "staging", "switching", "probation"]
T = TypeVar("T")


class Abandoned(ModelUpdateError):
    """The component is stopping: leave everything as it is, as a crash would (the record names the old model)."""


class RolloutFailed(ModelUpdateError):
    """A rollout step failed; ``reason`` is the label for counters and the status topic."""

    def __init__(self, reason: str, detail: str, model: messages.ModelRef | None = None,
                 transient: bool = False) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.model = model
        self.transient = transient or reason in TRANSIENT
        """The inference component was away or restarted: retry later, keep the verified files."""


@dataclass(frozen=True)
class Serving:
    """A model the inference component serves or is to serve, and what the status says of it."""

    ref: messages.ModelRef
    path: str | None
    source: Literal["store", "image"]
    """``store``: installed and verified here; ``image``: adopted from the inference component's report."""
    policy_type: str | None = None
    robot: str | None = None
    norm_mode: Literal["degrees", "range_m100_100"] | None = None

    @classmethod
    def from_store(cls, model: InstalledModel, manifest: ModelManifest | None = None) -> Serving:
        manifest = manifest or model.manifest()
        return cls(model.ref, str(model.path), "store", manifest.policy_type, manifest.robot, manifest.norm_mode)

    @property
    def name(self) -> str:
        return f"{self.ref.name} {self.ref.version}"

    def status(self, state: str, detail: str = "", **fields: Any) -> messages.ModelStatus:
        return messages.ModelStatus(t=0.0, state=state, model=self.ref, policy_type=self.policy_type,  # type: ignore[arg-type]
                                    path=self.path, robot=self.robot, norm_mode=self.norm_mode, detail=detail[:4000],
                                    **fields)


def status_of(current: Serving | None, state: str, detail: str = "", **fields: Any) -> messages.ModelStatus:
    """A status about ``current`` (or about no model)."""
    if current is None:
        return messages.ModelStatus(t=0.0, state=state, detail=detail[:4000], **fields)  # type: ignore[arg-type]
    return current.status(state, detail, **fields)


@dataclass(frozen=True)
class Switched:
    """A rollout that reached ``serving``."""

    new: Serving
    previous: Serving | None
    hold: bool
    download_mbps: float | None
    verify_to_serving_s: float | None


@dataclass
class RolloutContext:
    """What a rollout uses; the orchestrator owns it."""

    store: ModelStore
    sources: ModelSources
    channel: InferenceChannel
    publish: Callable[[messages.ModelStatus], None]
    set_phase: Callable[[Phase], None]
    counters: Counters
    log: logging.Logger
    clock: Callable[[], float]


class Rollout:
    """Runs the steps of one rollout of ``spec``; :meth:`run` returns Switched or None (already active)."""

    def __init__(self, context: RolloutContext, config: ModelUpdaterConfig, spec: ModelSpec,
                 current: Serving | None, refused: set[messages.ModelRef]) -> None:
        self.ctx = context
        self.config = config
        self.spec = spec
        self.current = current
        self.refused = refused
        self._last_progress = -PROGRESS_EVERY_S
        self._activated = False
        self._hold = False
        self._staged = False

    def run(self) -> Switched | None:
        ctx = self.ctx
        ctx.set_phase("staging")
        ctx.publish(status_of(self.current, "staging", f"{self.spec.describe()}: reading the manifest"))
        manifest = self._call(lambda: ctx.sources.manifest(self.spec))
        adopting = self.current is not None and self.current.ref == manifest.ref and self.current.source == "image"
        if self.current is not None and self.current.ref == manifest.ref and not adopting:
            ctx.log.info("%s %s from %s is already active", manifest.name, manifest.version, self.spec.describe())
            return None
        if manifest.ref in self.refused:
            raise RolloutFailed("previously_rolled_back", f"{manifest.name} {manifest.version} was rolled back on this "
                                "device before and is not rolled out again; publish a fixed version and deploy it",
                                manifest.ref)
        ctx.counters.add("rollouts.started")
        ctx.log.info("rollout of %s %s (sha256 %s...) from %s", manifest.name, manifest.version, manifest.sha256[:12],
                     self.spec.describe())
        fetched = self._call(lambda: ctx.sources.fetch(
            self.spec, manifest, ctx.store, self._progress(manifest),
            self.config.max_download_mbps * 1e6 if self.config.max_download_mbps else None), manifest.ref)
        ctx.counters.add("downloads.bytes", fetched.bytes_fetched)
        mbps = fetched.bytes_fetched / 1e6 / fetched.seconds if fetched.bytes_fetched and fetched.seconds > 0 else None
        verified_at = time.monotonic()  # figures are real durations, whatever clock drives the logic
        new = Serving.from_store(fetched.model, manifest)
        if adopting:  # it serves this model already (loaded from its own path): record it, nothing to switch
            ctx.log.info("the inference component serves %s already; recording it from the store", new.name)
            return Switched(new, None, False, mbps, None)
        try:
            if self._stage(new, manifest):
                self._activate(new)
        except RolloutFailed as failure:
            self._undo(new, failure)
            raise
        return Switched(new, self.current, self._hold, mbps, time.monotonic() - verified_at)

    # --- steps ----------------------------------------------------------------------------------

    def _no_answer(self) -> None:
        """A wait ended without an answer: because the component stops, or a real timeout (the caller's error)."""
        if self.ctx.channel.closed:
            raise Abandoned("the model-updater is stopping")

    def _call(self, step: Callable[[], T], model: messages.ModelRef | None = None) -> T:
        """Run a library step, turning its errors into RolloutFailed with their reason label."""
        try:
            return step()
        except RolloutFailed:
            raise
        except ModelUpdateError as exc:
            raise RolloutFailed(exc.reason, str(exc), model) from exc
        except VlaEdgeError as exc:
            raise RolloutFailed("update_failed", str(exc), model) from exc

    def _progress(self, manifest: ModelManifest) -> Callable[[int, int, float], None]:
        def report(done: int, total: int, rate: float) -> None:
            now = time.monotonic()
            if done < total and now - self._last_progress < PROGRESS_EVERY_S:
                return
            self._last_progress = now
            percent = 100.0 * done / total if total else 100.0
            speed = f", {_size(rate)}/s" if rate > 0 else ""
            self.ctx.publish(status_of(self.current, "staging", f"{manifest.name} {manifest.version}: fetching "
                                       f"{percent:.0f}% ({_size(done)} of {_size(total)}{speed})"))
        return report

    def _stage_request(self, new: Serving, manifest: ModelManifest, allow_unload: bool) -> messages.ModelReport:
        answered: list[bool] = []

        def progress(report: messages.ModelReport) -> None:
            answered.append(True)
            if report.state in ("validating", "loading"):
                where = " beside the serving model" if report.state == "loading" and report.beside else ""
                self.ctx.publish(status_of(self.current, "switching" if self._hold else "staging",
                                           f"{new.name}: {report.state}{where} in the inference component",
                                           next_model=new.ref if self._hold else None, hold=self._hold,
                                           next_norm_mode=new.norm_mode if self._hold else None))

        report = self.ctx.channel.request(
            "stage", new.ref, self.config.stage_timeout_s, new.path or "", progress,
            memory_mb=float(manifest.memory_mb), allow_unload=allow_unload,
            latency_budget_ms=self.config.latency_budget_ms or None, joint_limits=dict(self.config.joint_limits))
        if report is None:
            self._no_answer()
            self._staged = True  # it may still be loading: unload it when giving up
            raise RolloutFailed("stage_timeout", f"the inference component did not report {new.name} staged within "
                                f"{self.config.stage_timeout_s:.0f} s (stageTimeoutS); is it running?", new.ref,
                                transient=not answered)  # never answered: it was away, not the model's fault
        return report

    def _stage(self, new: Serving, manifest: ModelManifest) -> bool:
        """Validate and load beside (or, short of memory, instead of) the serving model; False: it serves already."""
        self._await_inference(new)
        self.ctx.publish(status_of(self.current, "staging", f"{new.name}: verified; staging in the inference component"))
        report = self._stage_request(new, manifest, allow_unload=False)
        if self._serves_already(new, report):
            return False
        if report.state == "failed" and report.reason == "slot_occupied" and self._free_slot(new):
            report = self._stage_request(new, manifest, allow_unload=False)
        if report.state == "failed" and report.reason == "insufficient_memory" and self.current is not None:
            self._hold = True
            self.ctx.set_phase("switching")
            self.ctx.log.warning("%s does not fit beside %s: the arm holds while one replaces the other (%s)",
                                 new.name, self.current.name, report.detail)
            self.ctx.publish(status_of(self.current, "switching", f"not enough memory for {self.current.name} and "
                                       f"{new.name} together: the arm holds while {new.name} replaces it",
                                       next_model=new.ref, hold=True, next_norm_mode=new.norm_mode))
            report = self._stage_request(new, manifest, allow_unload=True)
        if self._serves_already(new, report):
            return False
        if report.state == "failed":
            raise RolloutFailed(report.reason or "stage_failed", report.detail or "staging failed", new.ref)
        self._staged = True
        return report.state != "serving"

    def _await_inference(self, new: Serving) -> None:
        """Wait (bounded) until the inference component reported anything: a command it does not hear is lost."""
        channel = self.ctx.channel
        if channel.heard:
            return
        bound = min(ANNOUNCE_WAIT_S, self.config.stage_timeout_s)
        self.ctx.publish(status_of(self.current, "staging", f"{new.name}: verified; waiting for the inference "
                                   f"component to announce itself (it may still be starting; up to {bound:.0f} s, "
                                   "then retried)"))
        self.ctx.log.info("waiting for the inference component to report before staging %s", new.name)
        deadline = time.monotonic() + bound
        while not channel.heard:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RolloutFailed("inference_unavailable", f"the inference component did not report within "
                                    f"{bound:.0f} s; {new.name} is staged once it does", new.ref)
            # a running component that announced before this updater listened answers this at no cost
            request_id = channel.send("discard", new.ref, new.path or "")
            channel.wait(request_id, TERMINAL_DISCARD, min(PROBE_EVERY_S, remaining))
            self._no_answer()

    def _serves_already(self, new: Serving, report: messages.ModelReport) -> bool:
        """The inference component (re)started serving the new model itself (e.g. from the same path)."""
        if report.state == "failed" and report.reason == "inference_restarted" and report.model == new.ref:
            self.ctx.log.info("the inference component started serving %s itself; taking it as staged", new.name)
            self._staged = True
            return True
        return False

    def _free_slot(self, new: Serving) -> bool:
        """Unload whatever known model is loaded beside the serving one; True when there was one to try.

        A model is left beside the serving one when the updater stopped during a probation (the
        previous model) or a rollout; which one the inference component does not say, so each
        model the store knows, other than these two, is discarded (a model not loaded answers
        ``unloaded`` too, at no cost).
        """
        record = self.ctx.store.record()
        keep = {new.ref, self.current.ref if self.current else None}
        candidates = [r for r in dict.fromkeys([*record.previous, *record.staged, *record.rolled_back]) if r not in keep]
        self.ctx.log.info("a model is loaded beside the serving one; unloading the store's other models (%d)",
                          len(candidates))
        for ref in candidates:
            self.ctx.channel.request("discard", ref, self.config.switch_timeout_s)
        return bool(candidates)

    def _activate(self, new: Serving) -> None:
        self.ctx.set_phase("switching")
        held = f" (the arm holds: {new.name} was loaded in place of the serving model)" if self._hold else ""
        self.ctx.publish(status_of(self.current, "switching", f"switching to {new.name}{held}", next_model=new.ref,
                                   hold=self._hold, next_norm_mode=new.norm_mode))
        self._activated = True
        report = self.ctx.channel.request("activate", new.ref, self.config.switch_timeout_s, new.path or "")
        if report is None:
            self._no_answer()
            raise RolloutFailed("switch_timeout", f"{new.name} did not report serving within "
                                f"{self.config.switch_timeout_s:.0f} s of activate (switchTimeoutS): no first chunk "
                                "(are camera frames and joint states arriving?)", new.ref)
        if report.state == "failed":
            raise RolloutFailed(report.reason or "activate_failed", report.detail or "activation failed", new.ref)

    def _undo(self, new: Serving, failure: RolloutFailed) -> None:
        """Put the previous model back in service if it may have been disturbed; unload and remove the new one."""
        ctx, current = self.ctx, self.current
        if ctx.channel.closed:
            return  # stopping: a later start reconciles from the record
        notes = []
        if current is not None and (self._activated or self._hold):
            ctx.set_phase("switching")
            report = ctx.channel.request("activate", current.ref, self.config.switch_timeout_s, current.path or "")
            if report is None or report.state != "serving":
                why = "no answer" if report is None else f"{report.reason}: {report.detail}"
                ctx.log.error("%s could not be made to serve again after the failed rollout (%s)", current.name, why)
                notes.append(f"switching back to {current.name} failed too ({why}); it is commanded again when the "
                             "inference component reports")
            else:
                notes.append(f"{current.name} serves again")
        elif current is not None:
            notes.append(f"{current.name} keeps serving")
        if failure.transient and not self._activated:
            ctx.log.info("%s stays verified in the store for the retry (%s)", new.name, failure.reason)
            if notes:
                failure.detail = f"{failure.detail}; {'; '.join(notes)}"
            return
        if self._staged or self._activated:
            report = ctx.channel.request("discard", new.ref, self.config.switch_timeout_s, new.path or "")
            if report is None or report.state != "unloaded":
                ctx.log.warning("%s was not unloaded after the failed rollout: %s", new.name,
                                "no answer" if report is None else report.detail)
        try:
            ctx.store.discard(new.ref, f"rollout failed ({failure.reason})")
        except ModelUpdateError as exc:
            ctx.log.warning("%s stays in the store: %s", new.name, exc)
        if notes:
            failure.detail = f"{failure.detail}; {'; '.join(notes)}"


def _size(n: float) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"
