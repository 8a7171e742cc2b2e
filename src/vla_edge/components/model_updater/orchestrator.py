"""The model-updater's state machine: which model is active, and one change of it at a time.

Everything that changes the active model runs on one worker thread, in order: the start-up
(read the store's record, announce it), rollouts of the desired model (:mod:`.rollout`),
putting the inference component back on the recorded model when it restarted with another,
and the end of a probation (:mod:`.probation`): discard the previous model and prune the
store, or roll back. Bus handlers and the component's loop only queue work and feed
observations, so none of them ever waits for a model to load.

The record (``active.json``) changes only once the inference component reported the new
model serving: an updater that dies before that comes back with the old model active and
tells the inference component to serve it. One exception: when the model replaced was adopted
from the inference component (it is not in the store, so the store cannot record a return
to it), the new model is recorded when its probation passes.

A desired model whose rollout ended (well or not) is not tried again until the desired model
changes, except after a transient failure (the inference component was not up yet, or restarted
during the rollout): that rollout is tried again after a backoff (RETRY_S, doubling up to
RETRY_MAX_S), the verified files kept in the store; and a version rolled back from is never rolled out again (the store remembers it).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable

from vla_edge import messages
from vla_edge.components.base import Counters
from vla_edge.components.model_updater.channel import InferenceChannel
from vla_edge.components.model_updater.config import ModelSpec, ModelUpdaterConfig
from vla_edge.components.model_updater.probation import (
    HealthBaseline,
    Probation,
    Verdict,
)
from vla_edge.components.model_updater.rollout import (
    Abandoned,
    Phase,
    Rollout,
    RolloutContext,
    RolloutFailed,
    Serving,
    Switched,
    status_of,
)
from vla_edge.components.model_updater.sources import ModelSources
from vla_edge.errors import ModelUpdateError
from vla_edge.updater.store import ModelStore

Job = Callable[[], None]
WORKER_POLL_S = 0.1
RETRY_S = 5.0
"""After a transient rollout failure, the first wait before trying again (doubled each time, to RETRY_MAX_S)."""
RETRY_MAX_S = 60.0
START_CHECK_S = 10.0
"""On start, how long to wait for the inference component to confirm the recorded model (it may not run yet)."""


class Orchestrator:
    """See the module docstring; ``config`` returns the configuration in force (it changes live)."""

    def __init__(self, store: ModelStore, sources: ModelSources, channel: InferenceChannel,
                 publish: Callable[[messages.ModelStatus], None], counters: Counters, log: logging.Logger,
                 clock: Callable[[], float], config: Callable[[], ModelUpdaterConfig],
                 set_state: Callable[[str, str], None]) -> None:
        self.ctx = RolloutContext(store, sources, channel, publish, self._set_phase, counters, log, clock)
        self._config = config
        self._set_state = set_state
        self.log = log
        self.counters = counters
        self._lock = threading.Lock()
        self._jobs: queue.Queue[Job] = queue.Queue()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.phase: Phase = "idle"
        self.current: Serving | None = None
        self.desired: ModelSpec = config().desired()
        self._settled: ModelSpec | None = None
        self._retry_at = 0.0  # time.monotonic(): the backoff is real time, whatever clock drives probations
        self._retries = 0
        self._bad: set[messages.ModelRef] = set()
        self._health = HealthBaseline()
        self.probation: Probation | None = None
        self._previous: Serving | None = None
        self._concluding = False
        self._figures: dict[str, float | None] = {"download_mbps": None, "verify_to_serving_s": None}

    # --- lifecycle --------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._work, name="model-updater", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self.ctx.channel.close()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                self.log.warning("the rollout worker was still busy at shutdown (a download or a wait); it is "
                                 "abandoned, and the record still names the model active before it")

    def _work(self) -> None:
        self._run_job(self._startup)  # before anything a bus handler queued meanwhile
        while not self._stop.is_set():
            job: Job | None
            try:
                job = self._jobs.get(timeout=WORKER_POLL_S)
            except queue.Empty:
                job = self._rollout if self._rollout_due() else None
            if job is not None:
                self._run_job(job)

    def _run_job(self, job: Job) -> None:
        try:
            job()
        except Exception:  # a bug in one job must not end the updater: logged, counted, reported
            self.counters.add("worker_errors")
            self.log.exception("model-updater job %s failed", getattr(job, "__name__", job))
            self._fail("internal_error", "an internal error ended this step; see the component log", None)
        finally:
            self._set_phase("probation" if self.probation is not None else "idle")

    # --- inputs (any thread) ----------------------------------------------------------------------

    def set_desired(self, spec: ModelSpec) -> None:
        with self._lock:
            changed, self.desired = spec != self.desired, spec
        if changed:
            self.log.info("desired model is now %s", spec.describe())

    def on_report(self, report: messages.ModelReport) -> None:
        if self.ctx.channel.on_report(report):
            return
        if report.request_id is not None:
            level = logging.WARNING if report.state == "failed" else logging.DEBUG
            self.log.log(level, "late answer %s for %s %s: %s", report.state, report.model.name, report.model.version,
                         report.detail)
            return
        if report.state != "serving":
            return
        with self._lock:
            probation = self.probation
        if probation is not None:
            probation.on_report(report)
        else:
            self._jobs.put(lambda: self._reconcile(report))

    def on_health(self, health: messages.ComponentHealth) -> None:
        if health.component != "inference":
            return
        now = self.ctx.clock()
        with self._lock:
            probation = self.probation
            if probation is None:
                self._health.observe(health, now)
        if probation is not None:
            probation.on_health(health, now)

    def tick(self) -> None:
        """From the component's loop: conclude a probation whose verdict is in."""
        with self._lock:
            probation, concluding = self.probation, self._concluding
        if probation is None or concluding:
            return
        verdict = probation.check(self.ctx.clock())
        if verdict is None:
            return
        with self._lock:
            self._concluding = True
        self._jobs.put(lambda: self._conclude(probation, verdict))

    def busy(self) -> str | None:
        """Why a component update must wait for the updater (None: it need not)."""
        with self._lock:
            phase, current = self.phase, self.current
        if phase == "switching":
            return f"a model switch is under way (from {current.name if current else 'no model'})"
        return None

    def metrics(self) -> dict[str, float | None]:
        with self._lock:
            probation = self.probation
            figures = dict(self._figures)
        figures["probation_remaining_s"] = probation.remaining(self.ctx.clock()) if probation is not None else None
        return figures

    def _set_phase(self, phase: Phase) -> None:
        with self._lock:
            self.phase = phase

    # --- jobs (worker thread) ---------------------------------------------------------------------

    def _startup(self) -> None:
        config = self._config()
        try:
            record = self.ctx.store.record()
            installed = self.ctx.store.active()
            self._bad.update(record.rolled_back)
        except ModelUpdateError as exc:
            self._set_state("ERRORED", f"cannot read the model store: {exc}")
            self.ctx.publish(status_of(None, "none", f"the model store's record cannot be read: {exc}"))
            return
        if installed is not None:
            self.current = Serving.from_store(installed)
            self.ctx.publish(self.current.status("active", self.ctx.store.record_problem or "recorded active"))
        else:
            missing = f"; {record.active.name} {record.active.version} is recorded but missing" if record.active else ""
            self.ctx.publish(status_of(None, "none", f"no model in the store yet{missing}; waiting for the inference "
                                       "component to report what it serves"))
        if installed is not None and self.current is not None and self.desired.source != "image":
            # Not a switch as far as deferring updates goes: most often it serves this model already,
            # and an inference component that is not up yet must not hold deployments back.
            self._serve(self.current, min(config.switch_timeout_s, START_CHECK_S), "on start", switching=False)

    def _rollout_due(self) -> bool:
        with self._lock:
            spec, settled, probation = self.desired, self._settled, self.probation
        return (spec.source not in ("none", "image") and probation is None and spec != settled
                and time.monotonic() >= self._retry_at)

    def _rollout(self) -> None:
        config = self._config()
        with self._lock:
            spec = self.desired
        current = self.current
        try:
            switched = Rollout(self.ctx, config, spec, current, self._bad).run()
        except Abandoned:
            self._settled = spec
            self.log.warning("rollout of %s abandoned: the component is stopping", spec.describe())
            return
        except RolloutFailed as failure:
            if failure.transient:
                self._retry_later(spec, failure)
                return
            self._settled, self._retries = spec, 0
            self._fail(failure.reason, failure.detail, failure.model)
            return
        self._settled, self._retries = spec, 0
        if switched is None:
            if current is not None:
                self.ctx.publish(current.status("active", f"{spec.describe()} is the active model"))
            return
        self._switched(switched, spec, config)

    def _retry_later(self, spec: ModelSpec, failure: RolloutFailed) -> None:
        """Not the model's fault: leave the desired model unsettled and try again after a backoff."""
        wait = min(RETRY_S * 2 ** self._retries, RETRY_MAX_S)
        self._retries += 1
        self._retry_at = time.monotonic() + wait
        self.counters.add(f"rollouts.retried.{failure.reason}")
        name = f"{failure.model.name} {failure.model.version}" if failure.model else spec.describe()
        self.log.warning("rollout of %s interrupted (%s): %s; trying again in %.0f s", name, failure.reason,
                         failure.detail, wait)
        self.ctx.publish(status_of(self.current, "staging", f"{name}: waiting for the inference component "
                                   f"({failure.reason}: {failure.detail}); trying again in {wait:.0f} s"))

    def _switched(self, switched: Switched, spec: ModelSpec, config: ModelUpdaterConfig) -> None:
        new, previous = switched.new, switched.previous
        record_now = previous is None or previous.source == "store"
        if record_now:
            try:
                self.ctx.store.activate(new.ref, f"rolled out from {spec.describe()}")
            except ModelUpdateError as exc:  # the record is the truth: a model it does not name must not serve
                self._switch_back(new, previous)
                self._fail("update_failed", f"{new.name} served, but recording it active failed ({exc}); switched "
                           "back", new.ref)
                return
        with self._lock:
            self.current = new
            self._figures.update(download_mbps=switched.download_mbps,
                                 verify_to_serving_s=switched.verify_to_serving_s)
        self._set_state("RUNNING", f"serving {new.name}")
        if previous is None or config.probation_s <= 0:
            self.ctx.publish(new.status("active", f"serving since the switch from {spec.describe()}"))
            self._passed(new, previous, Verdict(True, detail="no probation" if previous else
                                                "no probation: there is no previous model to roll back to"))
            return
        baseline = HealthBaseline(self._health.seen_at, self._health.chunks, self._health.errors,
                                  self._health.chunk_growth_at)
        probation = Probation(new.ref, self.ctx.clock(), config.probation_s, baseline)
        if not probation.watches_health:
            self.log.warning("no health from the inference component so far: the probation of %s watches only its "
                             "model reports", new.name)
        with self._lock:
            self.probation, self._previous, self._concluding = probation, previous, False
        self.ctx.publish(new.status("active", f"serving since the switch from {previous.name}; on probation for "
                                    f"{config.probation_s:.0f} s ({previous.name} stays loaded for a rollback)"))

    def _switch_back(self, new: Serving, previous: Serving | None) -> None:
        timeout = self._config().switch_timeout_s
        if previous is not None:
            self.ctx.channel.request("activate", previous.ref, timeout, previous.path or "")
            self.ctx.channel.request("discard", new.ref, timeout, new.path or "")
        try:
            self.ctx.store.discard(new.ref, "switched back: its activation could not be recorded")
        except ModelUpdateError as exc:
            self.log.warning("%s stays in the store: %s", new.name, exc)

    def _conclude(self, probation: Probation, verdict: Verdict) -> None:
        with self._lock:
            if self.probation is not probation:
                return
            self.probation, previous, self._concluding = None, self._previous, False
            self._previous = None
        new = self.current
        assert new is not None
        if verdict.passed:
            if previous is not None and previous.source == "image":
                self.ctx.store.activate(new.ref, f"probation passed (replacing {previous.name} from the image)")
            self._passed(new, previous, verdict)
        else:
            assert previous is not None
            self._rollback(new, previous, verdict)

    def _passed(self, new: Serving, previous: Serving | None, verdict: Verdict) -> None:
        config = self._config()
        if previous is not None:
            report = self.ctx.channel.request("discard", previous.ref, config.switch_timeout_s, previous.path or "")
            if report is None or report.state != "unloaded":
                self.log.warning("%s was not unloaded after the probation: %s", previous.name,
                                 "no answer" if report is None else report.detail)
        try:
            removed = self.ctx.store.prune(config.keep_previous)
        except ModelUpdateError as exc:
            self.log.warning("could not prune the model store: %s", exc)
            removed = []
        self.counters.add("rollouts.succeeded")
        pruned = f"; removed {len(removed)} old model(s) from the store" if removed else ""
        self.ctx.publish(new.status("active", verdict.detail + pruned))

    def _rollback(self, bad: Serving, previous: Serving, verdict: Verdict) -> None:
        config = self._config()
        self._set_phase("switching")
        self.log.error("rolling back %s to %s: %s", bad.name, previous.name, verdict.detail)
        self.ctx.publish(bad.status("switching", f"rolling back to {previous.name}: {verdict.detail}",
                                    next_model=previous.ref, next_norm_mode=previous.norm_mode))
        report = self.ctx.channel.request("activate", previous.ref, config.switch_timeout_s, previous.path or "")
        confirmed = report is not None and report.state == "serving"
        if previous.source == "store":
            self.ctx.store.rollback(f"{verdict.reason}: {verdict.detail}")
        with self._lock:
            self.current = previous
            self._bad.add(bad.ref)
        detail = f"rolled back from {bad.name} to {previous.name} ({verdict.reason}): {verdict.detail}"
        if not confirmed:
            detail += (f"; the inference component has not confirmed serving {previous.name} yet "
                       f"({'no answer' if report is None else report.detail}): it is told again when it reports")
        self.counters.add("rollouts.rolled_back")
        self.counters.add(f"rollouts.rolled_back.{verdict.reason}")
        self.ctx.publish(previous.status("rolled_back", detail))
        self.ctx.publish(previous.status("active", detail))
        self._set_state("ERRORED", detail)
        if confirmed:
            self.ctx.channel.request("discard", bad.ref, config.switch_timeout_s, bad.path or "")
        # Not pruned now: the record's reason would become the prune's. The bad model's files go with the
        # next prune (after the next rollout's probation); the record keeps it in rolled_back either way.

    def _fail(self, reason: str, detail: str, model: messages.ModelRef | None) -> None:
        current = self.current
        self.counters.add(f"rollouts.failed.{reason}")
        name = f"{model.name} {model.version}" if model else self.desired.describe()
        self.ctx.publish(status_of(current, "failed", f"{name} ({reason}): {detail}", next_model=model))
        if current is not None:
            self.ctx.publish(current.status("active", f"the update to {name} failed ({reason}); {current.name} serves"))
        else:
            self.ctx.publish(status_of(None, "none", f"the update to {name} failed ({reason})"))
        self._set_state("ERRORED", f"update to {name} failed ({reason}): {detail}")

    def _reconcile(self, report: messages.ModelReport) -> None:
        """The inference component (re)started serving ``report.model``: adopt it, or have it serve ours."""
        current, config = self.current, self._config()
        served = f"{report.model.name} {report.model.version}"
        if current is None or current.source == "image" or self.desired.source == "image":
            if current is not None and current.ref == report.model:
                return
            adopted = Serving(report.model, report.path, "image")
            with self._lock:
                self.current = adopted
            self.log.info("adopting %s, which the inference component serves (the model of its image)", served)
            self.ctx.publish(adopted.status("active", "adopted: the model the inference component serves (its "
                                            "image's); not in the store"))
            return
        if current.ref == report.model:
            self.log.info("the inference component (re)started serving %s, the active model", served)
            return
        self._serve(current, config.switch_timeout_s, f"after it (re)started serving {served}")

    def _serve(self, model: Serving, timeout_s: float, why: str, switching: bool = True) -> None:
        """Tell the inference component to serve ``model`` (it stages it first when it is not loaded)."""
        self.log.info("telling the inference component to serve %s %s", model.name, why)
        if switching:
            self._set_phase("switching")
        report = self.ctx.channel.request("activate", model.ref, timeout_s, model.path or "")
        if report is not None and report.state == "serving":
            return
        if report is not None and report.reason == "inference_restarted":
            return  # its announcement is queued: _reconcile decides again
        why_not = "no answer" if report is None else f"{report.reason}: {report.detail}"
        level = logging.INFO if report is None else logging.ERROR
        self.log.log(level, "the inference component did not confirm serving %s (%s); it is told again when it "
                     "reports what it serves", model.name, why_not)
        if report is not None:
            self.counters.add("reconcile_failures")
            self.ctx.publish(model.status("active", f"recorded active, but the inference component could not serve "
                                          f"it: {why_not}"))
