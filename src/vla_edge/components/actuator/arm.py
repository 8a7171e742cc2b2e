"""The arm as the control loop knows it: measured positions, the goal, the torque state.

Every read and write of the actuator goes through :class:`Arm`, in joint units
(:class:`~.units.JointUnits` converts to and from ticks), over the retrying
:class:`~.link.ServoLink`. It only moves bytes and remembers what the servos were told;
*whether* to move (schedule, watchdog, e-stop, fault stop) is the control loop's call.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence

from vla_edge.components.actuator.link import ServoLink
from vla_edge.components.actuator.units import JointUnits
from vla_edge.errors import ServoBusError, ServoFault

SETTLED_STEP = 0.2
"""The arm counts as settled when no joint moved more than this (joint units) between two reads."""


class Arm:
    """Positions, goal and torque of the configured joints, in joint order and joint units."""

    def __init__(
        self,
        link: ServoLink,
        units: JointUnits,
        note_faults: Callable[[Mapping[int, int]], None],
        log: logging.Logger,
    ) -> None:
        self.link = link
        self.units = units
        self._note_faults = note_faults
        self.log = log
        self.present: list[float] | None = None
        """The last measured positions (None before the first read)."""
        self.goal: list[float] | None = None
        """The goal last written; None once torque is off (the next goal starts from :attr:`present`)."""
        self.torque: bool | None = None
        """Whether torque is on; None while unknown (before connecting, or after a failed change)."""
        self.holding = True

    def read(self) -> list[float]:
        """Measure the joint positions. Error bits in the answers go to ``note_faults`` and the
        positions are still used: an overheating servo still knows where it is."""
        try:
            ticks = self.link.read_positions()
        except ServoFault as exc:
            if set(exc.values) != set(self.units.ids):
                raise
            self._note_faults(exc.faults)
            ticks = exc.values
        self.present = self.units.positions(ticks)
        return self.present

    def write(self, goals: Sequence[float]) -> None:
        """Send goals that the caller has already clamped (:func:`~.safety.clamp_goal`)."""
        self.link.write_goals(self.units.goals(goals))
        self.goal = list(goals)
        self.holding = False

    def hold(self, energize: bool) -> None:
        """Goal := measured position (nothing moves); with ``energize`` also switch torque on."""
        assert self.present is not None, "read the arm before holding it"
        self.link.write_goals(self.units.goals(self.present))
        self.goal = list(self.present)
        self.holding = True
        if energize:
            self.set_torque(True)

    def set_torque(self, enabled: bool) -> None:
        self.torque = None  # unknown until the bus confirms
        self.link.set_torque(enabled)
        self.torque = enabled
        if not enabled:
            self.goal = None
            self.holding = True

    def release(self) -> None:
        """Torque off, best effort: every servo is tried (:meth:`~vla_edge.motors.base.ServoBus.set_torque`)
        and a failure is logged, not raised, so the caller goes on with the next safe step."""
        if not self.link.is_connected:
            return
        try:
            self.set_torque(False)
        except ServoBusError as exc:
            self.log.error("torque off did not reach every servo: %s. Cut the servo power if the arm is still stiff", exc)

    def settle(self, within_s: float, interval_s: float) -> None:
        """Hold where the arm is until it stops moving, for at most ``within_s``.

        A servo told to hold decelerates onto its goal rather than stopping dead, so each
        read re-holds at the new position; torque off before that would let the arm coast.
        """
        deadline = time.monotonic() + within_s
        before = self.read()
        self.hold(energize=False)
        while time.monotonic() < deadline:
            time.sleep(interval_s)
            now = self.read()
            if max(abs(a - b) for a, b in zip(now, before, strict=True)) < SETTLED_STEP:
                return
            self.hold(energize=False)
            before = now
