"""Time-indexed queue of joint targets built from action chunks.

Action ``i`` of a chunk is meant for wall-clock time ``t_start + i * dt``. The queue holds
one :class:`ScheduledAction` per time slot. A new chunk takes over the slots its span
covers (``t_start`` through its last action, on *its* grid); the value of each of its
slots is the configured merge function (:mod:`.merge`: ``latest``, ``average``,
``crossfade``) of the newest ``merge_max_chunks`` chunks covering that time, each
resampled by time, so chunks on different grids merge cleanly. Queued actions outside
the new span stay as they were.

Time is always a parameter (``now``, wall-clock seconds like the chunk times); the
schedule never reads a clock. With ``now`` given, :meth:`ActionSchedule.submit`

* drops a chunk whose last action is more than ``max_lag_s`` old (nothing in it could
  still be executed): outcome ``stale``;
* rejects a chunk whose ``t_start`` is more than ``max_lead_s`` ahead (the clocks of
  sender and actuator disagree): outcome ``far_future``.

Each control tick :meth:`ActionSchedule.pop_due` takes the newest action whose time has
come and drops the ones more than the maximum lag old (counted as stale). Thread-safe:
chunks arrive on the transport thread, ticks run on the control thread; merging is done
outside the queue's lock so a large merge never delays a tick.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from vla_edge import messages
from vla_edge.components.actuator.merge import (
    MERGE_FUNCTIONS,
    SLOT_TOLERANCE,
    MergeName,
    Track,
    contributors,
    merge,
)
from vla_edge.components.actuator.safety import UnsafeAction, check_vector

if TYPE_CHECKING:
    from vla_edge.components.actuator.config import ActuatorConfig

MAX_QUEUED_ACTIONS = 10_000
DEFAULT_MAX_LAG_S = 0.05
DEFAULT_MAX_LEAD_S = 5.0
DEFAULT_MERGE_DECAY = 0.5
DEFAULT_MERGE_MAX_CHUNKS = 8
DEFAULT_CROSSFADE_S = 0.2


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
    """One value per configured joint, in configuration order (merged with older chunks)."""
    chunk: ChunkInfo = field(compare=False)
    """The chunk whose slot this is (the newest chunk that contributed)."""
    index: int = field(default=0, compare=False)
    """Position of the action in its chunk."""


@dataclass(frozen=True)
class Due:
    action: ScheduledAction | None
    stale: int
    """Actions discarded because they were more than the maximum lag old."""
    skipped: int
    """Due actions passed over because a newer one was also due."""
    ahead_s: float = 0.0
    """Seconds from ``now`` to the last queued action after this pop (0: nothing planned)."""


Outcome = Literal["queued", "stale", "far_future", "cleared"]


@dataclass(frozen=True)
class Admission:
    """What :meth:`ActionSchedule.submit` did with a chunk."""

    outcome: Outcome
    """``queued``; ``stale`` (its last action was too old on arrival); ``far_future`` (``t_start``
    too far ahead); ``cleared`` (the schedule was cleared while the chunk was being merged)."""
    replaced: int = 0
    """Queued actions inside the chunk's span, now replaced by its (merged) slots."""
    merged: int = 0
    """Slots of the chunk, not yet stale, that an older remembered chunk also covered."""
    queued: int = 0
    """Actions the chunk added to the queue."""
    detail: str = ""


class ActionSchedule:
    """Queue of actions by time; see the module docstring. Defaults reproduce ``latest``."""

    def __init__(
        self,
        names: Sequence[str],
        merge: MergeName = "latest",
        *,
        merge_decay: float = DEFAULT_MERGE_DECAY,
        merge_max_chunks: int = DEFAULT_MERGE_MAX_CHUNKS,
        crossfade_s: float = DEFAULT_CROSSFADE_S,
        max_lag_s: float = DEFAULT_MAX_LAG_S,
        max_lead_s: float = DEFAULT_MAX_LEAD_S,
    ) -> None:
        if merge not in MERGE_FUNCTIONS:
            raise ValueError(f"unknown merge function {merge!r}; use one of {MERGE_FUNCTIONS}")
        if merge_max_chunks < 1:
            raise ValueError(f"merge_max_chunks must be at least 1, got {merge_max_chunks}")
        for name, value in (("crossfade_s", crossfade_s), ("max_lag_s", max_lag_s), ("max_lead_s", max_lead_s)):
            if not value > 0:
                raise ValueError(f"{name} must be positive, got {value!r}")
        if not merge_decay >= 0:
            raise ValueError(f"merge_decay must be >= 0, got {merge_decay!r}")
        self.names = list(names)
        self.merge: MergeName = merge
        self.merge_decay = merge_decay
        self.merge_max_chunks = merge_max_chunks
        self.crossfade_s = crossfade_s
        self.max_lag_s = max_lag_s
        self.max_lead_s = max_lead_s
        self._lock = threading.Lock()  # the queue and the remembered tracks
        self._submit_lock = threading.Lock()  # one merge at a time
        self._actions: list[ScheduledAction] = []
        self._tracks: list[Track] = []  # oldest first
        self._generation = 0

    @classmethod
    def from_config(cls, config: ActuatorConfig) -> ActionSchedule:
        return cls(
            config.names,
            config.chunk_merge,
            merge_decay=config.merge_decay,
            merge_max_chunks=config.merge_max_chunks,
            crossfade_s=config.crossfade_s,
            max_lag_s=config.max_action_lag_s,
            max_lead_s=config.max_lead_s,
        )

    def add(self, chunk: messages.ActionChunk, now: float | None = None) -> int:
        """Queue a chunk (see :meth:`submit`); returns how many queued actions it replaced."""
        return self.submit(chunk, now).replaced

    def submit(self, chunk: messages.ActionChunk, now: float | None = None) -> Admission:
        """Merge a chunk into the queue, or say why not.

        ``now`` (wall-clock seconds) enables the staleness and lead checks and starts a
        crossfade no earlier than the arrival; without it neither check is made and a
        crossfade starts at ``t_start``. Raises :class:`UnsafeAction` for a chunk for other
        joints or with non-finite values.
        """
        track = self._track(chunk, now)
        if now is not None:
            if chunk.t_start > now + self.max_lead_s:
                return Admission(
                    "far_future",
                    detail=f"chunk {chunk.chunk_id} starts {chunk.t_start - now:.3f} s ahead "
                    f"(more than {self.max_lead_s} s): are the clocks synchronised?",
                )
            if track.t_end < now - self.max_lag_s:
                return Admission(
                    "stale",
                    detail=f"chunk {chunk.chunk_id} ended {now - track.t_end:.3f} s before it arrived",
                )
        info = ChunkInfo(chunk.chunk_id, chunk.t_observation)
        horizon = float("-inf") if now is None else now - self.max_lag_s
        with self._submit_lock:
            with self._lock:
                generation = self._generation
                alive = [t for t in self._tracks if t.t_end >= horizon]  # the others cannot matter any more
                keep = self.merge_max_chunks - 1
                older = alive[-keep:] if keep else []
            tracks = [track, *reversed(older)]  # newest first
            new: list[ScheduledAction] = []
            merged = 0
            for index, own in enumerate(track.actions):
                t = track.time(index)
                if t < horizon:  # too late to be executed: queued as it is, dropped (and counted) next tick
                    new.append(ScheduledAction(t, own, info, index))
                    continue
                value = merge(self.merge, tracks, t, decay=self.merge_decay, crossfade_s=self.crossfade_s)
                if value is None:  # the chunk always covers its own slots
                    raise AssertionError(f"merge left slot {index} of chunk {chunk.chunk_id} empty")
                values = check_vector(value, len(self.names), f"merged action {index}")
                if contributors(older, t):
                    merged += 1
                new.append(ScheduledAction(t, values, info, index))
            tolerance = SLOT_TOLERANCE * chunk.dt
            first, last = new[0].t - tolerance, new[-1].t + tolerance
            with self._lock:
                if self._generation != generation:
                    return Admission("cleared", detail=f"schedule cleared while chunk {chunk.chunk_id} was merged")
                kept = [a for a in self._actions if not first <= a.t <= last]
                replaced = len(self._actions) - len(kept)
                kept.extend(new)
                kept.sort()
                self._actions = kept[-MAX_QUEUED_ACTIONS:]
                self._tracks = [*older, track]
        return Admission("queued", replaced=replaced, merged=merged, queued=len(new))

    def _track(self, chunk: messages.ActionChunk, now: float | None) -> Track:
        if sorted(chunk.names) != sorted(self.names) or len(set(chunk.names)) != len(chunk.names):
            raise UnsafeAction(f"chunk {chunk.chunk_id} is for joints {chunk.names}; this arm has {self.names}")
        order = [chunk.names.index(name) for name in self.names]
        actions = tuple(
            check_vector([raw[i] for i in order], len(self.names), f"action {index}")
            for index, raw in enumerate(chunk.actions)
        )
        return Track(chunk.t_start, chunk.dt, actions, blend_from=now)

    def pop_due(self, now: float, tick_s: float | None = None) -> Due:
        """Remove and return the newest action with ``now - lag <= t <= now``.

        ``tick_s`` is the maximum lag (historically one control tick); ``None`` uses
        ``max_lag_s``. Older actions are dropped and counted in :attr:`Due.stale`.
        """
        lag = self.max_lag_s if tick_s is None else tick_s
        with self._lock:
            due_end = bisect.bisect_right(self._actions, now, key=lambda a: a.t)
            fresh_start = bisect.bisect_left(self._actions, now - lag, 0, due_end, key=lambda a: a.t)
            due = self._actions[fresh_start:due_end]
            stale = fresh_start
            del self._actions[:due_end]
            ahead = self._actions[-1].t - now if self._actions else 0.0
        if not due:
            return Due(None, stale, 0, ahead)
        return Due(due[-1], stale, len(due) - 1, ahead)

    def peek(self) -> ScheduledAction | None:
        """The next queued action, left in the queue."""
        with self._lock:
            return self._actions[0] if self._actions else None

    def ahead_s(self, now: float) -> float:
        """Seconds of planned actions after ``now`` (0 when nothing is planned)."""
        with self._lock:
            return max(0.0, self._actions[-1].t - now) if self._actions else 0.0

    def clear(self) -> int:
        """Drop every queued action and forget the remembered chunks; returns how many actions."""
        with self._lock:
            count = len(self._actions)
            self._actions.clear()
            self._tracks.clear()
            self._generation += 1
            return count

    def __len__(self) -> int:
        with self._lock:
            return len(self._actions)


MAX_INTERPOLATION_GAP_S = 0.25
"""Two actions further apart than this are a hole in the plan, not a slower action rate: no line."""


def between(previous: ScheduledAction, following: ScheduledAction | None, t: float) -> ScheduledAction | None:
    """The action at ``t`` on the straight line from ``previous`` to ``following`` (pure).

    ``None`` unless ``t`` lies strictly between them and they are at most
    :data:`MAX_INTERPOLATION_GAP_S` apart. The result belongs to ``following``'s chunk (its
    index too), so latency and chunk bookkeeping stay with the action being approached; its
    values lie between the two actions', so the safety clamps see nothing new.
    """
    if following is None or not previous.t < t < following.t:
        return None
    gap = following.t - previous.t
    if gap > MAX_INTERPOLATION_GAP_S:
        return None
    w = (t - previous.t) / gap
    values = tuple(a + (b - a) * w for a, b in zip(previous.values, following.values, strict=True))
    return ScheduledAction(t, values, following.chunk, following.index)
