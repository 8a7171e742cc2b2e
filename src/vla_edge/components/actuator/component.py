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
    arrives chunks are accepted; that the model is not yet confirmed is logged once. When
    the status says which ``norm_mode`` the model was trained in, its chunks are rejected
    (``rejected.norm_mode_mismatch``) unless the actuator is calibrated with that
    ``normMode`` (:mod:`.intake`).

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
    from the measured position. On stop (SIGTERM): hold, re-holding until the arm has settled
    (at most ``stopSettleS``), then torque off unless ``torqueOffOnStop`` is false.

Faults
    No exception leaves the control loop. A transaction without a usable answer (no
    status packet, bad checksum) is retried up to ``busRetries`` times while the retry
    fits before the tick's deadline (``bus_retries.<timeout|corrupt>``, :mod:`.link`); a
    failure left after that is counted (``bus_errors``), reported (state ERRORED with the
    reason) and the arm is re-held on the next good tick. Status packets with error bits
    still deliver the positions; each fault is counted (``servo_faults.<name>``) and
    logged (rate-limited) with the joint, servo id and what to check, and the serious
    ones (overheat, overload, overcurrent, input voltage, angle sensor: :mod:`.faults`)
    make the tick fail and report ERRORED naming joint and fault. After
    ``faultStopAfter`` failing ticks in a row with the port open, the plan is dropped,
    no goal is written and torque goes off, every servo tried (``safety.fault_torque_off``);
    the state stays ERRORED until a tick is clean again, and torque returns only with
    the next fresh action, from the measured position, as after a watchdog torque-off. A
    lost port is reopened ``reconnectIntervalS`` later, the wait doubling per failed
    attempt up to ``reconnectMaxIntervalS`` (``bus_reconnect_attempts``,
    ``bus_reconnects``). Servo telemetry (temperature, voltage, load, current and the
    error bits) is read at ``telemetryHz`` when the tick has time for it (:mod:`.telemetry`).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

from vla_edge import messages
from vla_edge.bus.base import Bus
from vla_edge.components.actuator.arm import Arm
from vla_edge.components.actuator.config import ActuatorConfig
from vla_edge.components.actuator.intake import ChunkIntake
from vla_edge.components.actuator.link import ServoLink, make_servo_bus
from vla_edge.components.actuator.loopstats import LoopStats
from vla_edge.components.actuator.monitor import FaultMonitor, Verdict
from vla_edge.components.actuator.ratelimit import RateLimitedLog
from vla_edge.components.actuator.safety import UnsafeAction, clamp_goal
from vla_edge.components.actuator.schedule import (
    ActionSchedule,
    ScheduledAction,
    between,
)
from vla_edge.components.actuator.telemetry import TelemetrySampler
from vla_edge.components.actuator.units import JointUnits
from vla_edge.components.base import Component
from vla_edge.errors import BusError, ServoBusError, ServoFault
from vla_edge.motors.base import ServoBus


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
        self._units = JointUnits.from_config(config)  # LeRobot calibration and normalisation when configured
        self._lower = [joint.min_deg for joint in config.joints]
        self._upper = [joint.max_deg for joint in config.joints]
        self._joints = {joint.id: joint.name for joint in config.joints}
        self._estop = threading.Event()
        self._wake = threading.Event()
        self.warnings = RateLimitedLog(self.log)
        self.intake = ChunkIntake(
            self.schedule, chunk_merge=config.chunk_merge, calibrated=self._units.calibrated,
            norm_mode=config.norm_mode, counters=self.counters, log=self.log, warnings=self.warnings, clock=clock,
        )
        self.link = ServoLink(
            self.servos, retries=config.bus_retries, packet_timeout_s=config.packet_timeout_ms / 1000.0,
            reconnect_interval_s=config.reconnect_interval_s, reconnect_max_interval_s=config.reconnect_max_interval_s,
            counters=self.counters, log=self.log,
        )
        self.monitor = FaultMonitor(self._joints, config.fault_stop_after, self.counters, self.warnings, self.log)
        self.arm = Arm(self.link, self._units, self.monitor.note, self.log)
        self.telemetry = TelemetrySampler(config.telemetry_hz)
        # Control-thread state.
        self._resync = False
        self._last_action = time.monotonic()
        self.stats = LoopStats(self.counters, self.log)
        self._last_executed: ScheduledAction | None = None

    # --- inbound messages (transport thread) ----------------------------------------------

    def _on_chunk(self, chunk: messages.ActionChunk) -> None:
        if self._estop.is_set():
            self.counters.add("ignored.chunk_during_estop")
            return
        self.intake.submit(chunk)

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
        self.router.subscribe(messages.TOPIC_MODEL_STATUS, self.intake.on_model_status, expect=messages.ModelStatus)

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
                try:
                    self._tick(min(planned, time.time()))
                except Exception as exc:  # a bug must not end the loop that can still turn torque off
                    self.counters.add("tick_errors")
                    self.log.exception("control tick failed unexpectedly; the loop goes on")
                    self._judge(self.monitor.failed(f"unexpected error in the control tick: {exc!r}", True))
                self._publish_health()
        finally:
            self._shutdown()

    def _tick(self, slot: float | None = None) -> None:
        """One control tick; ``slot`` is the wall-clock time it was planned for (its action's time)."""
        started = time.monotonic()
        self.stats.tick_started(started)
        if not self.link.is_connected and not self.link.open_due(started):
            return
        wall = time.time()
        slot = wall if slot is None else slot
        period = self.config.tick_s
        self.link.deadline = started + min(period, max(0.0, slot + period - wall))  # the next tick's start
        self.monitor.begin_tick()
        try:
            if not self.link.is_connected:
                self._connect(started)
            self._control(started, slot)
        except ServoBusError as exc:
            if isinstance(exc, ServoFault):
                self.monitor.note(exc.faults)
            self.counters.add("bus_errors")
            self._resync = True
            self.warnings.warning("bus_error", "servo bus: %s", exc)
            self._judge(self.monitor.failed(str(exc), toward_stop=self.link.is_connected))
        else:
            self._judge(self.monitor.checked())
        self.stats.tick_ended(started)

    def _connect(self, now: float) -> None:
        self.link.open(now)
        self.arm.read()
        if self._estop.is_set() or self.monitor.stopped or self._idle() >= self.config.torque_off_after_s:
            self.arm.set_torque(False)
        else:
            self.arm.hold(energize=True)
        self._resync = False
        self.log.info("servo bus ready on %s", self.config.serial_port)

    def _control(self, now: float, slot: float) -> None:
        """``now`` is monotonic (watchdog); ``slot`` the wall-clock time whose action this tick executes.

        Asking for the slot's action rather than the wake-up time's means a tick that wakes late
        still executes its own action and leaves the next one to the next tick.
        """
        latency_ms = None
        applied: ScheduledAction | None = None
        if self._estop.is_set() or self.monitor.stopped:
            dropped = self.schedule.clear()
            self._last_executed = None
            if dropped:
                self.counters.add("actions_dropped.estop" if self._estop.is_set() else "actions_dropped.fault_stop", dropped)
            if self._estop.is_set() and self.arm.torque is not False:
                self.arm.set_torque(False)
            self.arm.holding = True
        else:
            if self.intake.hold_requested:  # a model switch that unloads the serving model first
                self.intake.hold_requested = False
                self.counters.add("actions_dropped.model_switch", self.schedule.clear())
                self._last_executed = None
                if self.arm.torque is True:
                    self.arm.read()
                    self.arm.hold(energize=False)
            due = self.schedule.pop_due(slot, self.config.max_action_lag_s)
            self.stats.plan_ahead(due.ahead_s)
            if due.stale:
                self.counters.add("actions_dropped.stale", due.stale)
            if due.skipped:
                self.counters.add("actions_dropped.superseded", due.skipped)
            action = due.action if due.action is not None else self._between(slot)
            if action is None:
                self.stats.check_starved(now, due.ahead_s, self.arm.torque is True)
                self._watchdog()
            else:
                done, latency_ms = self._apply(action, now)
                applied = action if done else None
                if done and due.action is not None:
                    self._last_executed = due.action
        self.arm.read()
        self._resync = False
        self._publish_state(latency_ms, applied)
        if self.telemetry.due(now) and (self.link.fits("read_telemetry") or self.telemetry.overdue(now)):
            self.telemetry.update(self.link.read_telemetry(), now)  # after the state: it must not delay it
        self.monitor.note(self.telemetry.faults)  # the latest reading's, until the next one

    def _between(self, slot: float) -> ScheduledAction | None:
        """With ``interpolate``: for a tick between two planned actions, the straight line between
        them (controlHz above the policy's action rate moves smoothly instead of in steps)."""
        previous = self._last_executed
        if not self.config.interpolate or previous is None or self.arm.torque is not True:
            return None
        return between(previous, self.schedule.peek(), slot)

    def _apply(self, action: ScheduledAction, now: float) -> tuple[bool, float | None]:
        """Write one action; returns (written?, latency of its chunk if this is the chunk's first write)."""
        if self.arm.torque is not True:
            self.arm.hold(energize=True)
        reference = self.arm.goal if self.arm.goal is not None else self.arm.present
        assert reference is not None  # read on connect
        try:
            clamped = clamp_goal(action.values, reference, self._lower, self._upper, self.config.max_step_deg)
        except UnsafeAction as exc:
            self.counters.add("safety.rejected_action")
            self.log.warning("action not applied: %s", exc)
            return False, None
        self.arm.write(clamped.goals)
        written = time.time()
        self._last_action = now
        self.stats.applied(now)
        if clamped.any_limited:
            self.counters.add("safety.clamped_limit")
        if clamped.any_stepped:
            self.counters.add("safety.clamped_step")
        if action.chunk.applied:
            return True, None
        action.chunk.applied = True
        self.stats.latency_ms = (written - action.chunk.t_observation) * 1000.0
        return True, self.stats.latency_ms

    def _watchdog(self) -> None:
        idle = self._idle()
        if idle >= self.config.torque_off_after_s:
            if self.arm.torque is not False:
                self.log.warning("no fresh action for %.1f s: torque off", idle)
                self.counters.add("safety.watchdog_torque_off")
                self.arm.set_torque(False)
        elif self.arm.torque is True and (self._resync or (idle >= self.config.hold_after_s and not self.arm.holding)):
            if not self._resync:
                self.log.info("no fresh action for %.2f s: holding", idle)
                self.counters.add("safety.watchdog_hold")
            self.arm.hold(energize=False)

    # --- faults (judged by :mod:`.monitor`) -----------------------------------------------------

    def _judge(self, verdict: Verdict) -> None:
        """Act on a tick's verdict: stop (plan dropped, torque off) or recover (make sure it is off)."""
        if verdict.stop:
            self._last_executed = None
            dropped = self.schedule.clear()
            if dropped:
                self.counters.add("actions_dropped.fault_stop", dropped)
        if verdict.stop or (verdict.recovered and self.arm.torque is not False):
            self.arm.release()  # on recovery: the torque-off at the stop may not have reached every servo
        self.set_state(verdict.state, verdict.detail)

    def _shutdown(self) -> None:
        self.set_state("STOPPING")
        if self.link.is_connected:
            self.link.deadline = math.inf  # no tick to keep: retries may take their time
            try:
                held = self.arm.torque is not False and not self._estop.is_set() and not self.monitor.stopped
                if held and self.arm.present is not None:
                    self.arm.settle(self.config.stop_settle_s, min(self.config.tick_s, 0.02))
                if self.config.torque_off_on_stop or not held:
                    self.arm.set_torque(False)
                else:
                    self.log.warning("stopped with torque on, holding the arm (torqueOffOnStop is false)")
            except ServoBusError as exc:
                self.counters.add("bus_errors")
                self.log.error("could not hold and release the arm on stop: %s", exc)
        self.servos.disconnect()
        self._publish_health(force=True)

    # --- helpers ----------------------------------------------------------------------------

    def _idle(self) -> float:
        return time.monotonic() - self._last_action

    def _publish_state(self, latency_ms: float | None, applied: ScheduledAction | None) -> None:
        assert self.arm.present is not None
        state = messages.JointState(
            t=time.time(),
            names=self.config.names,
            positions=self.arm.present,
            goals=self.arm.goal,
            holding=self.arm.holding,
            torque_enabled=self.arm.torque is True,
            actions_applied=self.stats.actions_applied,
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
        return {
            **self.stats.metrics(),
            "queued_actions": float(len(self.schedule)),
            "holding": float(self.arm.holding),
            "torque_enabled": None if self.arm.torque is None else float(self.arm.torque),
            "estop": float(self._estop.is_set()),
            "idle_s": self._idle(),
            **self.monitor.metrics(),
            **self.telemetry.metrics(time.monotonic()),
        }
