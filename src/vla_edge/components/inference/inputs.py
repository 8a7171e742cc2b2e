"""What an inference reads: joint states and task instructions with their times.

Messages arrive on the transport thread; the inference thread asks for the value that
was current at a given time (the capture time of the observation's newest frame, or one
``actionDt`` earlier for policies that take an observation history).
"""

from __future__ import annotations

import bisect
import threading
from collections import deque
from dataclasses import dataclass

import numpy as np

from vla_edge import messages

JOINT_STATES_KEPT = 512
"""Joint states kept for history lookups: several seconds at any plausible control rate."""
TASKS_KEPT = 16


@dataclass(frozen=True)
class Observation:
    """Inputs of one policy step: images per camera, joint positions in configured order, task."""

    images: dict[str, np.ndarray]
    state: list[float]
    t_observation: float
    """Capture time of the newest frame among the cameras."""
    task: str


class InputHistory:
    """Latest joint states and every recent task instruction, with the times they became current."""

    def __init__(self, joint_names: list[str], task: str) -> None:
        self.joint_names = list(joint_names)
        self._lock = threading.Lock()
        self._states: deque[messages.JointState] = deque(maxlen=JOINT_STATES_KEPT)
        self._tasks: deque[tuple[float, str]] = deque([(float("-inf"), task)], maxlen=TASKS_KEPT)

    # --- joint states ----------------------------------------------------------------------

    def add_joint_state(self, state: messages.JointState) -> None:
        with self._lock:
            if self._states and state.t < self._states[-1].t:
                # the sender's clock went back (a restarted actuator, an NTP step): start the history again,
                # since dropping newer-than-now states would leave inference waiting for "fresh" joints
                self._states.clear()
            self._states.append(state)

    def latest_joint_state(self) -> messages.JointState | None:
        with self._lock:
            return self._states[-1] if self._states else None

    def joint_state_at(self, t: float) -> messages.JointState | None:
        """The joint state measured closest to ``t`` (None before the first)."""
        with self._lock:
            states = list(self._states)
        if not states:
            return None
        index = bisect.bisect_left([s.t for s in states], t)
        candidates = states[max(0, index - 1) : index + 1]
        return min(candidates, key=lambda s: abs(s.t - t))

    def positions(self, state: messages.JointState) -> list[float]:
        """``state``'s positions in configured joint order."""
        by_name = dict(zip(state.names, state.positions, strict=True))
        return [by_name[name] for name in self.joint_names]

    # --- task instructions -------------------------------------------------------------------

    def set_task(self, text: str, t: float) -> str:
        """Record an instruction received at ``t``; returns the task it replaces."""
        with self._lock:
            previous = self._tasks[-1][1]
            self._tasks.append((t, text))
        return previous

    @property
    def task(self) -> str:
        """The newest instruction."""
        with self._lock:
            return self._tasks[-1][1]

    def task_at(self, t: float) -> str:
        """The instruction that was current at ``t`` (an observation taken before an instruction keeps the old one)."""
        with self._lock:
            tasks = list(self._tasks)
        current = tasks[0][1]
        for received, text in tasks:
            if received > t:
                break
            current = text
        return current
