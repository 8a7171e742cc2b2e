"""Holding Greengrass component updates back while they would hurt.

A deployment that restarts the actuator or the inference component while the arm executes
a chunk stops it mid-motion; one that lands while the updater switches models leaves the
inference component with a half-done switch. With the deployment's update policy
NOTIFY_COMPONENTS, the nucleus asks subscribed components first (a pre-update event); this
module answers: defer (asking to be asked again ``deferRecheckS`` later) while

* the arm executes: the latest JointState, received within :data:`FRESH_S`, says it is
  not holding and its torque is on (an actuator that went quiet is not moving anything);
* a model switch is under way (the updater's phase is ``switching``),

and let the update go (``recheck_after_ms=0``) otherwise. Each answer is logged and counted
(``updates.deferred``, ``updates.allowed``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from vla_edge import messages
from vla_edge.bus.base import Bus, ComponentUpdateEvent
from vla_edge.components.base import Counters
from vla_edge.errors import BusError

FRESH_S = 1.0
"""A JointState older than this says nothing about what the arm does now."""


class ArmActivity:
    """The latest JointState and when it arrived (on the caller's clock)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._latest: tuple[float, messages.JointState] | None = None

    def on_joint_state(self, state: messages.JointState) -> None:
        with self._lock:
            self._latest = (self._clock(), state)

    def executing(self) -> str | None:
        """Why the arm counts as executing, or None when it holds, has no torque or is silent."""
        with self._lock:
            latest = self._latest
        if latest is None:
            return None
        received, state = latest
        if self._clock() - received > FRESH_S or state.holding or not state.torque_enabled:
            return None
        where = f" (chunk {state.chunk_id}, action {state.action_index})" if state.chunk_id else ""
        return f"the arm is executing actions{where}"


class UpdateDeferral:
    """Answers pre-update events; ``busy`` says why the updater itself cannot be disturbed (or None)."""

    def __init__(self, bus: Bus, arm: ArmActivity, busy: Callable[[], str | None], recheck_s: Callable[[], float],
                 enabled: Callable[[], bool], counters: Counters, log: logging.Logger) -> None:
        self.bus = bus
        self.arm = arm
        self.busy = busy
        self.recheck_s = recheck_s
        self.enabled = enabled
        self.counters = counters
        self.log = log

    def why_defer(self) -> str | None:
        if not self.enabled():
            return None
        return self.busy() or self.arm.executing()

    def on_event(self, event: ComponentUpdateEvent) -> None:
        if event.kind == "post":
            self.log.info("deployment %s finished updating components", event.deployment_id)
            return
        reason = self.why_defer()
        recheck_ms = round(self.recheck_s() * 1000) if reason else 0
        if reason:
            message = f"{reason}; ask again in {recheck_ms} ms"
        elif self.enabled():
            message = "the arm holds and no model switch runs"
        else:
            message = "not deferring (deferComponentUpdates is false)"
        try:
            self.bus.defer_component_update(event.deployment_id, message, recheck_ms)
        except BusError as exc:
            self.counters.add("updates.answer_errors")
            self.log.warning("could not answer the update of deployment %s: %s", event.deployment_id, exc)
            return
        if reason:
            self.counters.add("updates.deferred")
            self.log.info("deferred the component update of deployment %s: %s", event.deployment_id, message)
        else:
            self.counters.add("updates.allowed")
            self.log.info("let the component update of deployment %s go ahead: %s", event.deployment_id, message)
