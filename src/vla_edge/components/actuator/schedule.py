"""Time-indexed queue of joint targets built from action chunks.

Action ``i`` of a chunk is meant for wall-clock time ``t_start + i * dt``. A newer
chunk replaces the queued actions whose times it covers (``t_start`` through its last
action); queued actions outside that span stay. Each control tick takes the newest
action whose time has come and discards actions more than one tick old. Thread-safe:
chunks arrive on the transport thread, ticks run on the control thread.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

from vla_edge import messages
from vla_edge.components.actuator.safety import UnsafeAction, check_vector

MAX_QUEUED_ACTIONS = 10_000


@dataclass
class ChunkInfo:
    chunk_id: str
    t_observation: float
    applied: bool = False
    """Set when the first of its actions is written to the servos (for latency)."""


@dataclass(order=True)
class ScheduledAction:
    t: float
    values: tuple[float, ...] = field(compare=False)
    """One value per configured joint, in configuration order."""
    chunk: ChunkInfo = field(compare=False)
    index: int = field(default=0, compare=False)
    """Position of the action in its chunk."""


@dataclass(frozen=True)
class Due:
    action: ScheduledAction | None
    stale: int
    """Actions discarded because they were more than one tick old."""
    skipped: int
    """Due actions passed over because a newer one was also due."""


class ActionSchedule:
    def __init__(self, names: Sequence[str]) -> None:
        self.names = list(names)
        self._lock = threading.Lock()
        self._actions: list[ScheduledAction] = []

    def add(self, chunk: messages.ActionChunk) -> int:
        """Queue a chunk's actions (reordered to configuration order); returns how many replaced ones."""
        if sorted(chunk.names) != sorted(self.names) or len(set(chunk.names)) != len(chunk.names):
            raise UnsafeAction(f"chunk {chunk.chunk_id} is for joints {chunk.names}; this arm has {self.names}")
        order = [chunk.names.index(name) for name in self.names]
        info = ChunkInfo(chunk.chunk_id, chunk.t_observation)
        new = []
        for index, raw in enumerate(chunk.actions):
            values = check_vector([raw[i] for i in order], len(self.names), f"action {index}")
            new.append(ScheduledAction(chunk.t_start + index * chunk.dt, values, info, index))
        first, last = new[0].t, new[-1].t
        with self._lock:
            kept = [a for a in self._actions if not first <= a.t <= last]
            replaced = len(self._actions) - len(kept)
            kept.extend(new)
            kept.sort()
            self._actions = kept[-MAX_QUEUED_ACTIONS:]
        return replaced

    def pop_due(self, now: float, tick_s: float) -> Due:
        """Remove and return the newest action with ``now - tick_s <= t <= now``."""
        with self._lock:
            due_end = bisect.bisect_right(self._actions, now, key=lambda a: a.t)
            fresh_start = bisect.bisect_left(self._actions, now - tick_s, 0, due_end, key=lambda a: a.t)
            due = self._actions[fresh_start:due_end]
            stale = fresh_start
            del self._actions[:due_end]
        if not due:
            return Due(None, stale, 0)
        return Due(due[-1], stale, len(due) - 1)

    def clear(self) -> int:
        with self._lock:
            count = len(self._actions)
            self._actions.clear()
            return count

    def __len__(self) -> int:
        with self._lock:
            return len(self._actions)
