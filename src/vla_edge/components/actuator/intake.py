"""Which action chunks reach the actuator's schedule, and how each refusal is counted and told.

A chunk is refused when

* an active model is known (a ModelStatus with state ``active`` naming a model on
  ``vla-edge/model/status``) and the chunk comes from another model (name, version or
  sha256): ``rejected.inactive_model``. Before any such status, chunks are accepted and
  that the model is not yet confirmed is logged once. While the model-updater reports
  ``switching``, chunks from both the serving model and ``next_model`` are accepted, so
  the plan never runs dry between the last chunk of one and the first of the other; a
  switch with ``hold`` asks the control loop (``hold_requested``) to drop the queued plan
  and hold, because the serving model is unloaded before the next one can answer;
* the active model's status says which ``norm_mode`` it was trained in, and the actuator
  does not move in those units: it is uncalibrated (raw encoder degrees are not LeRobot
  units) or its ``normMode`` differs: ``rejected.norm_mode_mismatch``. A status without
  ``norm_mode`` is not checked;
* its actions are unsafe (:class:`~.safety.UnsafeAction`): ``rejected.<reason>``;

and otherwise admitted by :class:`~.schedule.ActionSchedule`, whose outcome is counted
(``chunks_dropped.<outcome>``, ``chunks_merged.<function>``, ``actions_replaced``).
Repeated warnings are rate-limited (:mod:`.ratelimit`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from vla_edge import messages
from vla_edge.components.actuator.ratelimit import RateLimitedLog
from vla_edge.components.actuator.safety import UnsafeAction
from vla_edge.components.actuator.schedule import ActionSchedule, Admission
from vla_edge.components.base import Counters


class ChunkIntake:
    """Admits chunks into ``schedule``; runs on the transport thread."""

    def __init__(
        self,
        schedule: ActionSchedule,
        *,
        chunk_merge: str,
        calibrated: bool,
        norm_mode: str,
        counters: Counters,
        log: logging.Logger,
        warnings: RateLimitedLog,
        clock: Callable[[], float],
    ) -> None:
        self.schedule = schedule
        self.chunk_merge = chunk_merge
        self.calibrated = calibrated
        self.norm_mode = norm_mode
        self.counters = counters
        self.log = log
        self.warnings = warnings
        self._clock = clock
        self.active: messages.ModelStatus | None = None
        """The latest ``active`` status that named a model."""
        self.incoming: messages.ModelRef | None = None
        """During a switch: the model taking over, whose chunks are accepted beside the active one's."""
        self._incoming_norm_mode: str | None = None
        self._hold_switch = False
        """A hold switch is under way: the serving model's chunks are refused until the next one is active."""
        self.hold_requested = False
        """Set by a hold switch; the control loop clears the plan, holds and resets it."""
        self._unconfirmed_logged = False

    @property
    def active_model(self) -> messages.ModelRef | None:
        return self.active.model if self.active is not None else None

    def on_model_status(self, status: messages.ModelStatus) -> None:
        """Remember the active model; chunks from any other model are rejected from now on."""
        if status.state == "switching" and status.next_model is not None:
            if status.next_model != self.incoming:
                self.counters.add("model.switching")
                self.log.info(
                    "model switch announced: accepting chunks from %s %s beside the serving model%s",
                    status.next_model.name, status.next_model.version,
                    "; holding the arm until it answers" if status.hold else "",
                )
            self.incoming = status.next_model
            self._incoming_norm_mode = status.next_norm_mode
            if status.hold and not self._hold_switch:
                self._hold_switch = True
                self.hold_requested = True
            return
        if status.state != "active" or status.model is None:
            return
        self.incoming = None
        self._incoming_norm_mode = None
        self._hold_switch = False
        previous = self.active_model
        self.active = status
        if status.model != previous:
            self.counters.add("model.active_changed")
            trained = ", ".join(
                f"{key} {value}" for key, value in (("robot", status.robot), ("normMode", status.norm_mode)) if value
            )
            self.log.info(
                "active model: %s %s (%s...)%s%s", status.model.name, status.model.version, status.model.sha256[:12],
                f" trained for {trained}" if trained else "",
                f", was {previous.name} {previous.version}" if previous is not None else "",
            )

    def submit(self, chunk: messages.ActionChunk) -> None:
        if not self._from_active_model(chunk) or not self._in_our_units(chunk):
            return
        try:
            admission = self.schedule.submit(chunk, self._clock())
        except UnsafeAction as exc:
            self.counters.add(f"rejected.{exc.reason}")
            self.log.warning("rejected action chunk: %s", exc)
            return
        self._count(admission)

    def _from_active_model(self, chunk: messages.ActionChunk) -> bool:
        active = self.active_model
        if active is None:
            if not self._unconfirmed_logged:
                self._unconfirmed_logged = True
                self.log.info(
                    "no active model confirmed yet (%s): accepting chunks from %s %s",
                    messages.TOPIC_MODEL_STATUS, chunk.model.name, chunk.model.version,
                )
            return True
        if chunk.model == self.incoming:
            return True
        if chunk.model == active:
            if not self._hold_switch:
                return True
            self.counters.add("rejected.hold_switch")  # the arm holds until the next model answers
            return False
        self.counters.add("rejected.inactive_model")
        self.warnings.warning(
            "inactive_model",
            "rejected action chunk from %s %s (%s...): the active model is %s %s (%s...)",
            chunk.model.name, chunk.model.version, chunk.model.sha256[:12],
            active.name, active.version, active.sha256[:12],
        )
        return False

    def _in_our_units(self, chunk: messages.ActionChunk) -> bool:
        """A model trained in LeRobot units must drive a calibrated actuator in the same ``normMode``."""
        status = self.active
        if self.incoming is not None and chunk.model == self.incoming:
            trained = self._incoming_norm_mode
        elif status is not None and status.model == chunk.model:
            trained = status.norm_mode
        else:
            trained = None
        if trained is None:
            return True
        if self.calibrated and trained == self.norm_mode:
            return True
        self.counters.add("rejected.norm_mode_mismatch")
        if not self.calibrated:
            fix = (
                "the actuator has no calibration and moves in raw encoder degrees, which are not LeRobot units: "
                f"give it this arm's LeRobot calibration (calibration or calibrationFile) and normMode {trained}"
            )
        else:
            fix = (
                f"the actuator's normMode is {self.norm_mode}: set normMode to {trained} "
                f"or deploy a model trained in {self.norm_mode}"
            )
        self.warnings.warning(
            "norm_mode_mismatch",
            "rejected action chunk from %s %s: the model was trained with normMode %s, but %s",
            chunk.model.name, chunk.model.version, trained, fix,
        )
        return False

    def _count(self, admission: Admission) -> None:
        if admission.outcome != "queued":
            self.counters.add(f"chunks_dropped.{admission.outcome}")
            if admission.outcome == "cleared":
                self.log.info("%s", admission.detail)
            else:
                self.warnings.warning(admission.outcome, "dropped action chunk: %s", admission.detail)
            return
        if admission.replaced:
            self.counters.add("actions_replaced", admission.replaced)
        if admission.merged:
            self.counters.add(f"chunks_merged.{self.chunk_merge}")
