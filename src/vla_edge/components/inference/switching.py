"""The models the inference component holds, and switching between them without a missed tick.

The model-updater decides which model is active; this module does the loading, on
:class:`~vla_edge.messages.ModelCommand` messages, and answers each with
:class:`~vla_edge.messages.ModelReport` messages.

Slots
    One *serving* model (the inference loop uses it) and at most one other loaded model:
    a staged one waiting for ``activate``, or the previous one, kept after a switch so a
    rollback is a pointer swap. A ``stage`` while the other slot is taken is refused
    (``slot_occupied``): the updater decides which model to drop, with ``discard``.

Stage (on a worker thread: the transport thread and the inference loop never wait for it)
    ``validating`` → identity check (the directory's digest is the commanded ModelRef: the
    actuator accepts chunks by that identity) → memory check → the validator subprocess
    (:mod:`vla_edge.policies.validate`) → memory check again (it may have changed) →
    ``loading`` → load and warm up beside the serving model → ``staged`` (``beside=true``).
    The memory check comes first so that a model that cannot be loaded here is refused in
    milliseconds, without a validator competing with the serving process for that memory.
    When both models do not fit: without ``allow_unload``, ``failed``/``insufficient_memory``;
    with it (the updater has put the arm on hold), the serving model is unloaded first and
    the stage ends ``staged`` with ``beside=false``; if loading then fails, the previous model
    is loaded again so a model serves. Only one stage runs at a time (another: ``busy``).

Activate
    The swap is requested here and made by the inference loop between two passes
    (:meth:`ModelSwitcher.begin_pass`), so a pass never mixes two models. The first pass
    after it infers at once instead of waiting for the refill point, so the new model's first
    chunk lands while the old plan still has actions ahead; ``serving`` (with
    ``first_chunk_id``) is reported when that chunk is published. If the new model's first
    inference fails, the previous model serves again and ``failed``/``inference_failed`` is
    reported. Activating a model that is not loaded stages it first.

Discard
    Drops every reference to a loaded, non-serving model, collects garbage and empties the
    CUDA cache, then reports ``unloaded``. Commands for a model already in the asked state
    are answered with that state again.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from vla_edge import messages
from vla_edge.components.base import Counters
from vla_edge.components.inference.config import InferenceConfig
from vla_edge.components.inference.model_reports import (
    MAX_DETAIL,
    Activation,
    ModelReporter,
)
from vla_edge.components.inference.staging import (
    MEMORY_MARGIN_MB,
    LoadedModel,
    ModelLoader,
    available_memory_mb,
    check_identity,
    describe,
    estimate_memory_mb,
    lower_thread_priority,
    memory_plan,
)
from vla_edge.policies import LoadedPolicy, load_policy
from vla_edge.policies.validate import (
    DEFAULT_TIMEOUT_S,
    ModelRejected,
    ValidationReport,
    validate_in_subprocess,
)

__all__ = ["MAX_DETAIL", "Activation", "ModelSwitcher"]


class ModelSwitcher:
    """Owns the loaded models; the inference loop asks it once per pass which one serves.

    ``validate``, ``load`` and ``free_memory_mb`` are the boundaries tests replace: the
    validator runner, the in-process loader and the free-memory reading.
    """

    def __init__(
        self,
        serving: LoadedModel,
        config: InferenceConfig,
        publish: Callable[[messages.Message], None],
        counters: Counters,
        *,
        task: Callable[[], str] = lambda: "",
        validate: Callable[..., ValidationReport] = validate_in_subprocess,
        load: Callable[..., LoadedPolicy] = load_policy,
        free_memory_mb: Callable[[], float] | None = None,
        validation_timeout_s: float = DEFAULT_TIMEOUT_S,
        memory_margin_mb: float = MEMORY_MARGIN_MB,
    ) -> None:
        self.config = config
        self.counters = counters
        self.device = serving.policy.device
        self.validate = validate
        self.loader = ModelLoader(load, config, self.device, task)
        self.free_memory_mb = free_memory_mb or (lambda: available_memory_mb(self.device))
        self.validation_timeout_s = validation_timeout_s
        self.memory_margin_mb = memory_margin_mb
        self.log = logging.getLogger("vla_edge.inference.models")
        self.reports = ModelReporter(publish, self.log)
        self._task = task
        self._lock = threading.Lock()
        self._serving: LoadedModel | None = serving
        self._other: LoadedModel | None = None
        self._pending: Activation | None = None
        self._active: Activation | None = None
        self._busy: messages.ModelRef | None = None
        self._worker: threading.Thread | None = None
        self._cancel = threading.Event()
        self._last_switch: dict[str, float | None] = {}

    # --- what the inference loop asks ---------------------------------------------------------

    @property
    def serving(self) -> LoadedModel | None:
        with self._lock:
            return self._serving

    def begin_pass(self) -> tuple[LoadedModel | None, Activation | None]:
        """The model for this pass, and the activation whose first chunk this pass should publish.

        A requested activation is made here, between passes: the previous serving model moves
        to the other slot (kept for rollback) and the new one serves from this pass on.
        """
        superseded = None
        with self._lock:
            if self._pending is not None:
                activation, self._pending = self._pending, None
                if activation.model is self._other:  # still loaded (a discard did not race it)
                    activation.previous = self._serving
                    self._serving, self._other = activation.model, activation.previous
                    superseded, self._active = self._active, activation
            serving, active = self._serving, self._active
        if superseded is not None:  # a second activate came before the first one's chunk
            self.reports.superseded(superseded.model.ref, superseded.request_id, active.model if active else None)
        return serving, active

    def first_chunk(self, activation: Activation, chunk: messages.ActionChunk) -> None:
        """The newly activated model's first chunk is out: report ``serving``."""
        elapsed = (time.perf_counter() - activation.received) * 1000.0
        with self._lock:
            if self._active is activation:
                self._active = None
            previous = activation.previous
            model = activation.model
            self._last_switch = {"validation_ms": model.validation_ms, "load_ms": model.load_ms,
                                 "first_chunk_ms": round(elapsed, 3)}
        self.counters.add("model_switches")
        self.reports.serving(model, previous, activation.request_id, chunk.chunk_id, elapsed)

    def first_chunk_failed(self, activation: Activation, exc: Exception) -> bool:
        """The new model's first inference failed: the previous model serves again. False when there is none."""
        with self._lock:
            if self._active is activation:
                self._active = None
            previous, model = activation.previous, activation.model
            restored = previous is not None and self._serving is model
            if restored:
                self._serving, self._other = previous, model
        self.counters.add("activation_failures")
        self.reports.first_chunk_failed(model, previous if restored else None, activation.request_id, exc)
        return restored

    # --- commands (transport thread) ----------------------------------------------------------

    def handle(self, command: messages.ModelCommand) -> None:
        """Answer one command; anything slow (validation, loading) runs on the worker thread."""
        self.counters.add(f"model_commands.{command.action}")
        self.log.info("model command %s %s (request %s)", command.action, describe(command.model), command.request_id)
        if command.action == "stage":
            self._start(command, activate=False)
        elif command.action == "activate":
            self._activate(command)
        else:
            self._discard(command)

    def _start(self, command: messages.ModelCommand, activate: bool) -> None:
        ref, answer, beside = command.model, None, False
        with self._lock:
            if self._busy is not None:
                answer = ("failed", "busy", f"{describe(self._busy)} is being staged; send the command again "
                          + "after it reports staged or failed")
            elif self._serving is not None and self._serving.ref == ref:
                answer = ("serving", None, "already serving")
            elif self._other is not None and self._other.ref == ref:
                answer, beside = ("staged", None, "already loaded"), self._other.beside
            elif self._pending is not None or self._active is not None:
                answer = ("failed", "busy", "a switch is in progress; send the command again after it reports serving")
            elif self._other is not None:
                answer = ("failed", "slot_occupied", f"{self._other.describe()} is loaded beside the serving model; "
                          + "discard it first (at most two models are kept loaded)")
            elif not command.path:
                answer = ("failed", "bad_command", f"{command.action} of a model that is not loaded needs its path")
            else:
                self._busy = ref
                self._worker = threading.Thread(target=self._stage_worker, args=(command, activate),
                                                name="model-stage", daemon=True)
        if answer is not None:
            state, reason, detail = answer
            self.reports.send(ref, state, command.request_id, reason=reason, detail=detail, beside=beside)
            return
        assert self._worker is not None
        self._worker.start()

    def _activate(self, command: messages.ModelCommand) -> None:
        ref = command.model
        with self._lock:
            serving = self._serving is not None and self._serving.ref == ref
            pending = self._pending is not None and self._pending.model.ref == ref
            switching = self._active is not None and self._active.model.ref == ref
            other = self._other is not None and self._other.ref == ref
            if serving and not switching:
                self._pending = None  # the updater changed its mind: the serving model stays
            elif other and not pending:
                assert self._other is not None
                self._pending = Activation(self._other, command.request_id, time.perf_counter())
        if serving and not switching:
            self.reports.send(ref, "serving", command.request_id, detail="already serving")
        elif pending or switching:
            self.log.info("activation of %s already in progress; it reports serving with its first chunk",
                          describe(ref))
        elif not other:
            self._start(command, activate=True)

    def _discard(self, command: messages.ModelCommand) -> None:
        ref, model, refusal = command.model, None, None
        with self._lock:
            if self._busy == ref:
                refusal = ("busy", "it is being staged; discard it after it reports staged or failed")
            elif self._serving is not None and self._serving.ref == ref:
                refusal = ("serving", "it is the serving model; activate another model first")
            elif self._other is not None and self._other.ref == ref:
                if self._pending is not None or self._active is not None:
                    refusal = ("busy", "a switch involving it is in progress; discard it after serving is reported")
                else:
                    model, self._other = self._other, None
        if refusal is not None:
            self.reports.send(ref, "failed", command.request_id, reason=refusal[0],
                              detail=f"cannot discard {describe(ref)}: {refusal[1]}")
            return
        if model is None:
            self.reports.send(ref, "unloaded", command.request_id, detail="was not loaded")
            return
        device, freed = model.policy.device, model.memory_mb
        del model
        self._free(device)
        self.reports.send(ref, "unloaded", command.request_id, detail=f"unloaded (about {freed:.0f} MB freed)")

    def _free(self, device: str) -> None:
        """Return a dropped model's memory: collect its reference cycles, give cached CUDA blocks back."""
        gc.collect()
        if device.startswith("cuda"):
            import torch

            torch.cuda.empty_cache()

    # --- staging (worker thread) ----------------------------------------------------------------

    def _stage_worker(self, command: messages.ModelCommand, activate: bool) -> None:
        ref = command.model
        model: LoadedModel | None = None
        lower_thread_priority(self.log)
        failure: tuple[str, str] | None = None
        try:
            model = self._stage(command)
        except ModelRejected as rejected:
            failure = (rejected.reason, rejected.detail)
        except Exception as exc:  # noqa: BLE001 - a staging bug must not leave the switcher busy forever; reported
            self.log.exception("staging %s failed unexpectedly", describe(ref))
            failure = ("stage_failed", f"unexpected error while staging: {type(exc).__name__}: {exc}; see the log")
        finally:
            with self._lock:
                self._busy = None  # before the report: the updater may answer it with the next command at once
        if model is None:
            reason, detail = failure or ("stage_failed", "no model was loaded")
            self.reports.send(ref, "failed", command.request_id, reason=reason, detail=detail)
            return
        self.reports.staged(ref, model, command.request_id)
        if activate:  # after "staged", so the reports keep their order; the loop then reports "serving"
            with self._lock:
                if self._other is model:
                    self._pending = Activation(model, command.request_id, time.perf_counter())

    def _stage(self, command: messages.ModelCommand) -> LoadedModel:
        ref = command.model
        path = Path(command.path).expanduser().resolve()
        self.reports.send(ref, "validating", command.request_id, path=str(path))
        check_identity(ref, path)
        need = command.memory_mb if command.memory_mb is not None else estimate_memory_mb(path)
        self._fits_beside(ref, need, command.allow_unload)  # refuse early: no validator for a model that cannot load
        started = time.perf_counter()
        report = self.validate(
            path, list(self.config.cameras), list(self.config.joint_names), timeout_s=self.validation_timeout_s,
            cancel=self._cancel, device=self.device, dtype=self.config.dtype, task=self._task(),
            latency_budget_ms=command.latency_budget_ms, joint_limits=command.joint_limits,
            threads=self.config.torch_threads,
        )
        validation_ms = round((time.perf_counter() - started) * 1000.0, 3)
        self.log.info("validation of %s: %s in %.0f ms (load %s ms, smoke p50 %s ms, max %s ms, peak RSS %s MB)",
                      describe(ref), "ok" if report.ok else report.reason, validation_ms, report.load_ms,
                      report.smoke_ms_p50, report.smoke_ms_max, report.peak_rss_mb)
        if not report.ok:
            raise ModelRejected(report.reason or "validation_failed", report.detail)
        beside = self._fits_beside(ref, need, command.allow_unload)
        self.reports.send(ref, "loading", command.request_id, beside=beside, path=str(path), memory_mb=need,
                          smoke_ms_p50=report.smoke_ms_p50)
        model = self._load_model(ref, path, need, beside)
        model.validation_ms, model.smoke_ms_p50 = validation_ms, report.smoke_ms_p50
        return model

    def _fits_beside(self, ref: messages.ModelRef, need: float, allow_unload: bool) -> bool:
        return memory_plan(ref, need, self.free_memory_mb(), self.memory_margin_mb, self.serving, allow_unload)

    def _load_model(self, ref: messages.ModelRef, path: Path, need: float, beside: bool) -> LoadedModel:
        unloaded: tuple[messages.ModelRef, Path, float] | None = None
        if not beside:
            with self._lock:
                previous, self._serving = self._serving, None
            if previous is not None:
                self.log.warning("unloading the serving model %s to make room for %s (allow_unload: the arm holds)",
                                 previous.describe(), describe(ref))
                unloaded, device = (previous.ref, previous.path, previous.memory_mb), previous.policy.device
                del previous  # the last reference: its memory is returned below
                self._free(device)
        try:
            policy, load_ms = self.loader.load(path)
        except Exception as exc:  # noqa: BLE001 - any loading failure: report it and keep (or restore) a serving model
            detail = f"loading {path} failed: {type(exc).__name__}: {exc}."
            if unloaded is not None:
                detail += " " + self._restore(*unloaded)
            elif beside:
                detail += " The serving model was not touched."
            raise ModelRejected("load_failed", detail) from exc
        model = LoadedModel(ref, policy, need, beside=beside, load_ms=load_ms)
        with self._lock:
            self._other = model
        return model

    def _restore(self, ref: messages.ModelRef, path: Path, memory_mb: float) -> str:
        """Load the model unloaded for a failed replacement again; what happened, for the report."""
        try:
            policy, load_ms = self.loader.load(path)
        except Exception as exc:  # noqa: BLE001 - reported: no model is loaded now
            self.log.error("could not load %s again: %s; no model serves", describe(ref), exc)
            return (f"Loading the previous model {describe(ref)} again failed too ({exc}): no model serves. "
                    "Stage a working model, or restart the inference component.")
        with self._lock:
            self._serving = LoadedModel(ref, policy, memory_mb, load_ms=load_ms)
        return f"The previous model {describe(ref)} was loaded again ({load_ms:.0f} ms) and serves."

    # --- reports, figures, lifecycle --------------------------------------------------------------

    def report_start(self) -> None:
        """Tell the updater which model runs (``serving``, no request id): it cannot ask."""
        serving = self.serving
        if serving is not None:
            self.reports.started(serving)

    def loaded(self) -> list[LoadedModel]:
        with self._lock:
            return [m for m in (self._serving, self._other) if m is not None]

    def metrics(self) -> dict[str, float | None]:
        with self._lock:
            figures = dict(self._last_switch)
            count = sum(m is not None for m in (self._serving, self._other))
        return {
            "models_loaded": float(count),
            "switch_validation_ms": figures.get("validation_ms"),
            "switch_load_ms": figures.get("load_ms"),
            "switch_first_chunk_ms": figures.get("first_chunk_ms"),
        }

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait for a running stage to end; True when none runs."""
        worker = self._worker
        if worker is not None:
            worker.join(timeout)
        return worker is None or not worker.is_alive()

    def close(self, timeout: float = 15.0) -> None:
        """Cancel a running validation (its process is killed) and wait for the stage to end."""
        self._cancel.set()
        if not self.wait_idle(timeout):
            self.log.warning("a model stage was still running at shutdown")
