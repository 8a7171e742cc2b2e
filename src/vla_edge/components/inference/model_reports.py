"""The model switcher's bookkeeping of commands: activations, and the ModelReports that answer commands.

:class:`Activation` records one ``activate`` command until the new model's first chunk.
:class:`ModelReporter` builds, logs and publishes every :class:`~vla_edge.messages.ModelReport` of
:class:`~vla_edge.components.inference.switching.ModelSwitcher`, and words the reports that end
a stage (``staged``) or a switch (``serving`` at the first chunk, ``failed`` when superseded or
when the new model's first inference fails).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from vla_edge import messages
from vla_edge.components.inference.staging import LoadedModel, describe

MAX_DETAIL = 4000


@dataclass(eq=False)
class Activation:
    """A switch to ``model``: requested on ``activate``, made by the loop, done at its first chunk."""

    model: LoadedModel
    request_id: str | None
    received: float
    """``time.perf_counter()`` when the activate command arrived."""
    previous: LoadedModel | None = None


class ModelReporter:
    """Publishes ModelReports (``detail`` cut to MAX_DETAIL) and logs each one, ``failed`` as a warning."""

    def __init__(self, publish: Callable[[messages.Message], None], log: logging.Logger) -> None:
        self.log = log
        self._publish = publish

    def send(self, ref: messages.ModelRef, state: str, request_id: str | None, *, detail: str = "",
             **fields: Any) -> None:
        report = messages.ModelReport(t=time.time(), request_id=request_id, model=ref, state=state,  # type: ignore[arg-type]
                                      detail=detail[:MAX_DETAIL], **fields)
        level = logging.WARNING if state == "failed" else logging.INFO
        self.log.log(level, "model %s: %s%s%s", describe(ref), state,
                     f" ({fields['reason']})" if fields.get("reason") else "", f": {detail}" if detail else "")
        self._publish(report)

    def started(self, serving: LoadedModel) -> None:
        """``serving`` without a request id: the model the component started with."""
        self.send(serving.ref, "serving", None, path=str(serving.path), memory_mb=serving.memory_mb,
                  load_ms=serving.load_ms, detail="serving since the component started")

    def staged(self, ref: messages.ModelRef, model: LoadedModel, request_id: str | None) -> None:
        self.send(ref, "staged", request_id, beside=model.beside, path=str(model.path),
                  load_ms=model.load_ms, smoke_ms_p50=model.smoke_ms_p50, memory_mb=model.memory_mb,
                  detail=f"validated in {model.validation_ms:.0f} ms, loaded "
                  f"{'beside the serving model' if model.beside else 'after unloading the serving model'} "
                  f"in {model.load_ms:.0f} ms")

    def superseded(self, ref: messages.ModelRef, request_id: str | None, by: LoadedModel | None) -> None:
        """An activation that another one (of ``by``) replaced before its model published its first chunk."""
        self.send(ref, "failed", request_id, reason="superseded",
                  detail=f"{by.describe() if by else 'another model'} was activated before "
                  "this model published its first chunk")

    def serving(self, model: LoadedModel, previous: LoadedModel | None, request_id: str | None, chunk_id: str,
                elapsed: float) -> None:
        """The newly activated ``model`` published its first chunk ``elapsed`` ms after the activate command."""
        kept = f"; {previous.describe()} stays loaded for rollback until discarded" if previous else ""
        self.send(model.ref, "serving", request_id, first_chunk_id=chunk_id, beside=model.beside,
                  path=str(model.path), load_ms=model.load_ms, smoke_ms_p50=model.smoke_ms_p50,
                  memory_mb=model.memory_mb, detail=f"first chunk {elapsed:.1f} ms after activate{kept}")

    def first_chunk_failed(self, model: LoadedModel, restored: LoadedModel | None, request_id: str | None,
                           exc: Exception) -> None:
        """The first inference of ``model`` failed; ``restored`` is the model serving again (None: none)."""
        detail = f"the first inference of {model.describe()} failed: {type(exc).__name__}: {exc}. "
        detail += (f"{restored.describe()} serves again; {model.describe()} stays loaded (discard it)."
                   if restored is not None else "No other model is loaded: it keeps being retried.")
        self.send(model.ref, "failed", request_id, reason="inference_failed", detail=detail)
