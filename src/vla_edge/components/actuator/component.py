"""Drives the arm: action chunks in, safe goal positions out, joint state back.

One control thread owns the servo bus. Each tick (``controlHz``) it

1. takes the action scheduled for now (:mod:`.schedule`), clamps it (:mod:`.safety`)
   and sync-writes the goals,
2. sync-reads the present positions and publishes :class:`~vla_edge.messages.JointState`.

Chunks and time
    An arriving chunk is merged into the schedule with ``chunkMerge`` (counted as
    ``chunks_merged.<function>`` when it overlapped a remembered chunk). A chunk whose
    last action is more than ``maxActionLagS`` old on arrival is dropped whole
    (``chunks_dropped.stale``); one starting more than ``maxLeadS`` ahead is rejected with
    a warning (``chunks_dropped.far_future``: a clock problem). An action more than
    ``maxActionLagS`` late at its tick is dropped (``actions_dropped.stale``). Health
    reports ``queue_ahead_s`` (seconds of plan left at the last tick, and its minimum
    since the previous report) and counts ``starved_ticks``: ticks with torque on, no
    action due and nothing planned, within a second of the last executed action.

Active model
    The actuator follows ``vla-edge/model/status``: once a ModelStatus with state
    ``active`` names a model, a chunk from any other model (name, version or sha256) is
    rejected (``rejected.inactive_model``, rate-limited warning). Before any such status
    arrives chunks are accepted; that the model is not yet confirmed is logged once.

Tick timing
    Ticks run on the wall-clock grid of ``1/controlHz``, ``tickPhaseS`` after each grid
    point. The inference component puts a chunk's actions on the same grid (``t_start`` is
    a multiple of ``actionDt``), so with ``controlHz = 1/actionDt`` each tick has exactly one
    action. A tick asks for the action of the slot it was planned for, not of the moment it
    woke: one that wakes late still executes its own action and leaves the next to the next.

Torque rules
    Connecting holds the arm where it is (goal = present position, torque on). With no
    fresh action for ``holdAfterS`` the arm holds; after ``torqueOffAfterS`` torque goes
    off. An emergency stop turns torque off at once and latches until a reset
    (``engaged=false``); while latched no goal is ever written. After an e-stop or a
    watchdog torque-off, torque returns only with the next fresh action, which starts
    from the measured position. On stop: hold, then torque off.

A servo-bus failure never leaves the loop: it is counted (``bus_errors``), reported
(state ERRORED with the reason) and the arm is re-held on the next good tick; a lost
port is reopened every ``reconnectIntervalS``.
"""

from __future__ import annotations

import collections
import math
import threading
import time
from collections.abc import Callable
from typing import Any

from vla_edge import messages
from vla_edge.bus.base import Bus
from vla_edge.components.actuator.config import ActuatorConfig
from vla_edge.components.actuator.safety import UnsafeAction, clamp_goal
from vla_edge.components.actuator.schedule import (
    ActionSchedule,
    Admission,
    ScheduledAction,
)
from vla_edge.components.actuator.units import JointUnits
from vla_edge.components.base import Component
from vla_edge.errors import BusError, ServoBusError
from vla_edge.motors.base import ServoBus, ServoBusConfig

STARVED_WINDOW_S = 1.0
"""A tick without a plan counts as starved only this soon after the last executed action."""
WARNING_INTERVAL_S = 5.0
"""Repeated warnings of one kind (far-future or stale chunks) are logged at most this often."""


def make_servo_bus(config: ActuatorConfig) -> ServoBus:
    from vla_edge.motors.feetech.bus import FeetechBus

    return FeetechBus(
        ServoBusConfig(
            port=config.serial_port,
            motor_ids=config.motor_ids,
            baudrate=config.baudrate,
            packet_timeout_ms=config.packet_timeout_ms,
        )
    )



def next_tick_time(now: float, period: float, phase: float) -> float:
    """The first wall-clock time after ``now`` of the form ``k * period + phase``."""
    return (math.floor((now - phase) / period) + 1) * period + phase

class ActuatorComponent(Component[ActuatorConfig]):
    name = "actuator"

    def __init__(
        self, bus: Bus, config: ActuatorConfig, servos: ServoBus | None = None, clock: Callable[[], float] = time.time
    ) -> None:
        super().__init__(bus, config)
        self._clock = clock  # wall clock for chunk admission; injectable so tests can drive time explicitly
        self.servos = servos if servos is not None else make_servo_bus(config)
        self.schedule = ActionSchedule.from_config(config)
        self._ids = config.motor_ids
        self._units = JointUnits.from_config(config)  # LeRobot calibration and normalisation when configured
        self._lower = [joint.min_deg for joint in config.joints]
        self._upper = [joint.max_deg for joint in config.joints]
        self._estop = threading.Event()
        self._wake = threading.Event()
        # Control-thread state.
        self._present: list[float] | None = None
        self._goal: list[float] | None = None
        self._torque: bool | None = None
        self._holding = True
        self._resync = False
        self._last_action = time.monotonic()
        self._next_connect = 0.0
        self._actions_applied = 0
        self._latency_ms: float | None = None
        self._tick_starts: collections.deque[float] = collections.deque(maxlen=256)
        self._tick_ms = 0.0
        self._tick_ms_max = 0.0
        self._last_applied: float | None = None
        self._starving = False
        self._ahead_s = 0.0
        self._ahead_s_min: float | None = None
        self._warned: dict[str, tuple[float, int]] = {}
        self._warn_lock = threading.Lock()
        self._active_model: messages.ModelRef | None = None
        self._unconfirmed_logged = False

    # --- inbound messages (transport thread) ----------------------------------------------

    def _on_chunk(self, chunk: messages.ActionChunk) -> None:
        if self._estop.is_set():
            self.counters.add("ignored.chunk_during_estop")
            return
        active = self._active_model
        if active is None:
            if not self._unconfirmed_logged:
                self._unconfirmed_logged = True
                self.log.info(
                    "no active model confirmed yet (%s): accepting chunks from %s %s",
                    messages.TOPIC_MODEL_STATUS, chunk.model.name, chunk.model.version,
                )
        elif chunk.model != active:
            self.counters.add("rejected.inactive_model")
            self._warn_limited(
                "inactive_model",
                "rejected action chunk from %s %s (%s...): the active model is %s %s (%s...)",
                chunk.model.name, chunk.model.version, chunk.model.sha256[:12],
                active.name, active.version, active.sha256[:12],
            )
            return
        try:
            admission = self.schedule.submit(chunk, self._clock())
        except UnsafeAction as exc:
            self.counters.add(f"rejected.{exc.reason}")
            self.log.warning("rejected action chunk: %s", exc)
            return
        self._count_admission(admission)

    def _count_admission(self, admission: Admission) -> None:
        if admission.outcome != "queued":
            self.counters.add(f"chunks_dropped.{admission.outcome}")
            if admission.outcome == "cleared":
                self.log.info("%s", admission.detail)
            else:
                self._warn_limited(admission.outcome, "dropped action chunk: %s", admission.detail)
            return
        if admission.replaced:
            self.counters.add("actions_replaced", admission.replaced)
        if admission.merged:
            self.counters.add(f"chunks_merged.{self.config.chunk_merge}")

    def _warn_limited(self, kind: str, message: str, *args: Any) -> None:
        """Log a warning, at most once per ``WARNING_INTERVAL_S`` per kind, saying how many were held back."""
        now = time.monotonic()
        with self._warn_lock:
            last, held = self._warned.get(kind, (float("-inf"), 0))
            if now - last < WARNING_INTERVAL_S:
                self._warned[kind] = (last, held + 1)
                return
            self._warned[kind] = (now, 0)
        suffix = f" (and {held} more like it since the last warning)" if held else ""
        self.log.warning(message + "%s", *args, suffix)

    def _on_model_status(self, status: messages.ModelStatus) -> None:
        """Remember the active model; chunks from any other model are rejected from now on."""
        if status.state != "active" or status.model is None:
            return
        if status.model != self._active_model:
            previous = self._active_model
            self._active_model = status.model
            self.counters.add("model.active_changed")
            self.log.info(
                "active model: %s %s (%s...)%s", status.model.name, status.model.version, status.model.sha256[:12],
                f", was {previous.name} {previous.version}" if previous is not None else "",
            )

    def _on_estop(self, estop: messages.EStop) -> None:
        if estop.engaged:
            if not self._estop.is_set():
                self._estop.set()
                self.counters.add("safety.estop")
                self.log.error("EMERGENCY STOP from %s: %s", estop.source, estop.reason or "(no reason)")
        elif self._estop.is_set():
            self._estop.clear()
            self.counters.add("safety.estop_reset")
            self.log.warning("e-stop reset by %s; torque returns with the next fresh action", estop.source)
        self._wake.set()

    # --- control loop ---------------------------------------------------------------------

    def subscribe(self) -> None:
        """Subscribe to action chunks, e-stops and model status (done by :meth:`run`)."""
        self.router.subscribe(messages.TOPIC_ACTION_CHUNK, self._on_chunk, expect=messages.ActionChunk)
        self.router.subscribe(messages.TOPIC_ESTOP, self._on_estop, expect=messages.EStop)
        self.router.subscribe(messages.TOPIC_MODEL_STATUS, self._on_model_status, expect=messages.ModelStatus)

    def run(self, stop: threading.Event) -> None:
        self.subscribe()
        period, phase = self.config.tick_s, self.config.tick_phase_s
        self._last_action = time.monotonic()
        try:
            while not stop.is_set():
                planned = next_tick_time(time.time(), period, phase)
                if self._wake.wait(max(0.0, planned - time.time())):
                    self._wake.clear()  # an e-stop: act now, then fall back onto the grid
                elif time.time() - planned > period - phase:
                    self.counters.add("tick_overruns")  # woke so late that the next grid point passed
                self._tick(min(planned, time.time()))
                self._publish_health()
        finally:
            self._shutdown()

    def _tick(self, slot: float | None = None) -> None:
        """One control tick; ``slot`` is the wall-clock time it was planned for (its action's time)."""
        started = time.monotonic()
        self._tick_starts.append(started)
        if not self.servos.is_connected:
            if started < self._next_connect:
                return
            self._next_connect = started + self.config.reconnect_interval_s
            try:
                self._connect()
            except ServoBusError as exc:
                self._bus_error(exc)
                return
        try:
            self._control(started, time.time() if slot is None else slot)
        except ServoBusError as exc:
            self._bus_error(exc)
        else:
            self.set_state("RUNNING")
        self._tick_ms = (time.monotonic() - started) * 1000.0
        self._tick_ms_max = max(self._tick_ms_max, self._tick_ms)

    def _connect(self) -> None:
        self.servos.connect()
        self._present = self._read_present()
        if self._estop.is_set() or self._idle() >= self.config.torque_off_after_s:
            self._set_torque(False)
        else:
            self._hold(energize=True)
        self._resync = False
        self.log.info("servo bus ready on %s", self.config.serial_port)

    def _control(self, now: float, slot: float) -> None:
        """``now`` is monotonic (watchdog); ``slot`` the wall-clock time whose action this tick executes.

        Asking for the slot's action rather than the wake-up time's means a tick that wakes late
        still executes its own action and leaves the next one to the next tick.
        """
        latency_ms = None
        applied: ScheduledAction | None = None
        if self._estop.is_set():
            dropped = self.schedule.clear()
            if dropped:
                self.counters.add("actions_dropped.estop", dropped)
            if self._torque is not False:
                self._set_torque(False)
            self._holding = True
        else:
            due = self.schedule.pop_due(slot, self.config.max_action_lag_s)
            self._ahead_s = due.ahead_s
            self._ahead_s_min = due.ahead_s if self._ahead_s_min is None else min(self._ahead_s_min, due.ahead_s)
            if due.stale:
                self.counters.add("actions_dropped.stale", due.stale)
            if due.skipped:
                self.counters.add("actions_dropped.superseded", due.skipped)
            if due.action is None:
                self._check_starved(now, due.ahead_s)
                self._watchdog()
            else:
                self._starving = False
                done, latency_ms = self._apply(due.action, now)
                applied = due.action if done else None
        self._present = self._read_present()
        self._resync = False
        self._publish_state(latency_ms, applied)

    def _check_starved(self, now: float, ahead_s: float) -> None:
        """Count a tick where the plan ran dry while the arm was being driven.

        A tick with no action while later actions are queued is normal when ``controlHz`` is
        faster than the policy's action rate (the goal simply stays), so it does not count.
        """
        recent = self._last_applied is not None and now - self._last_applied <= STARVED_WINDOW_S
        if not (self._torque is True and ahead_s <= 0.0 and recent):
            return
        self.counters.add("starved_ticks")
        if not self._starving:
            self._starving = True
            self.log.info("action queue ran dry: no action due and none planned (chunks arrive too late?)")

    def _apply(self, action: ScheduledAction, now: float) -> tuple[bool, float | None]:
        """Write one action; returns (written?, latency of its chunk if this is the chunk's first write)."""
        if self._torque is not True:
            self._hold(energize=True)
        reference = self._goal if self._goal is not None else self._present
        assert reference is not None  # read on connect
        try:
            clamped = clamp_goal(action.values, reference, self._lower, self._upper, self.config.max_step_deg)
        except UnsafeAction as exc:
            self.counters.add("safety.rejected_action")
            self.log.warning("action not applied: %s", exc)
            return False, None
        self.servos.sync_write_goals(self._to_ticks(clamped.goals))
        written = time.time()
        self._goal = list(clamped.goals)
        self._holding = False
        self._last_action = now
        self._last_applied = now
        self._actions_applied += 1
        self.counters.add("actions_applied")
        if clamped.any_limited:
            self.counters.add("safety.clamped_limit")
        if clamped.any_stepped:
            self.counters.add("safety.clamped_step")
        if action.chunk.applied:
            return True, None
        action.chunk.applied = True
        self._latency_ms = (written - action.chunk.t_observation) * 1000.0
        return True, self._latency_ms

    def _watchdog(self) -> None:
        idle = self._idle()
        if idle >= self.config.torque_off_after_s:
            if self._torque is not False:
                self.log.warning("no fresh action for %.1f s: torque off", idle)
                self.counters.add("safety.watchdog_torque_off")
                self._set_torque(False)
        elif self._torque is True and (self._resync or (idle >= self.config.hold_after_s and not self._holding)):
            if not self._resync:
                self.log.info("no fresh action for %.2f s: holding", idle)
                self.counters.add("safety.watchdog_hold")
            self._hold(energize=False)

    def _hold(self, energize: bool) -> None:
        """Goal := measured position (nothing moves); with ``energize`` also switch torque on."""
        assert self._present is not None
        self.servos.sync_write_goals(self._to_ticks(self._present))
        self._goal = list(self._present)
        self._holding = True
        if energize:
            self._set_torque(True)

    def _set_torque(self, enabled: bool) -> None:
        self._torque = None  # unknown until the bus confirms
        self.servos.set_torque(enabled)
        self._torque = enabled
        if not enabled:
            self._goal = None
            self._holding = True

    def _bus_error(self, exc: ServoBusError) -> None:
        self.counters.add("bus_errors")
        self._resync = True
        self.set_state("ERRORED", str(exc))
        self.log.warning("servo bus: %s", exc)

    def _shutdown(self) -> None:
        self.set_state("STOPPING")
        if self.servos.is_connected:
            try:
                if self._torque is not False and self._present is not None and not self._estop.is_set():
                    self._present = self._read_present()
                    self._hold(energize=False)
                self._set_torque(False)
            except ServoBusError as exc:
                self.counters.add("bus_errors")
                self.log.error("could not hold and release the arm on stop: %s", exc)
        self.servos.disconnect()
        self._publish_health(force=True)

    # --- helpers ----------------------------------------------------------------------------

    def _idle(self) -> float:
        return time.monotonic() - self._last_action

    def _read_present(self) -> list[float]:
        return self._units.positions(self.servos.sync_read_positions())

    def _to_ticks(self, values: list[float] | tuple[float, ...]) -> dict[int, int]:
        return self._units.goals(values)

    def _publish_state(self, latency_ms: float | None, applied: ScheduledAction | None) -> None:
        assert self._present is not None
        state = messages.JointState(
            t=time.time(),
            names=self.config.names,
            positions=self._present,
            goals=self._goal,
            holding=self._holding,
            torque_enabled=self._torque is True,
            actions_applied=self._actions_applied,
            latency_ms=latency_ms,
            chunk_id=applied.chunk.chunk_id if applied is not None else None,
            action_index=applied.index if applied is not None else None,
        )
        try:
            self.router.publish(state)
        except BusError as exc:
            self.counters.add("publish_errors")
            self.log.warning("joint state not published: %s", exc)

    def _publish_health(self, force: bool = False) -> None:
        try:
            self.publish_health(force=force)
        except BusError as exc:
            self.counters.add("publish_errors")
            self.log.warning("health not published: %s", exc)

    def metrics(self) -> dict[str, float | None]:
        starts = list(self._tick_starts)
        span = starts[-1] - starts[0] if len(starts) > 1 else 0.0
        figures: dict[str, float | None] = {
            "ticks_per_s": (len(starts) - 1) / span if span > 0 else None,
            "tick_ms": self._tick_ms,
            "tick_ms_max": self._tick_ms_max,
            "queued_actions": float(len(self.schedule)),
            "latency_ms": self._latency_ms,
            "holding": float(self._holding),
            "torque_enabled": None if self._torque is None else float(self._torque),
            "estop": float(self._estop.is_set()),
            "idle_s": self._idle(),
            "queue_ahead_s": self._ahead_s,
            "queue_ahead_s_min": self._ahead_s_min,
        }
        self._tick_ms_max = 0.0
        self._ahead_s_min = None
        return figures
