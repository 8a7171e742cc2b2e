"""Pure merge functions for overlapping action chunks (the actuator's ``chunkMerge``).

No I/O, no clocks, no state: every function takes the chunks and the time ``t`` it is
asked about and returns one joint vector, so the rules can be tested exhaustively.

Chunks as tracks
    A chunk is a :class:`Track`: its actions on its own time grid ``t_start + i * dt``
    in configuration joint order. Chunks need not share a grid (another ``dt``, or a
    ``t_start`` that is not a whole number of steps from the previous one), so slots are
    not matched by index: a track is **resampled by time**. Inside its span
    ``[t_start, t_end]`` its value at ``t`` is the linear interpolation between the two
    neighbouring actions; outside it the track says nothing. A time within
    :data:`SLOT_TOLERANCE` of a step of a grid point *is* that grid point (wall-clock
    seconds near 1.7e9 have a resolution of about 0.24 µs), so a track evaluated on its
    own grid returns its actions exactly.

The functions (``tracks`` are ordered newest first; only tracks covering ``t`` count)
    ``latest``
        the newest track's value: a new chunk replaces the older ones where it covers.
    ``average``
        weighted average over the covering tracks with weight ``exp(-decay * rank)``,
        rank 0 for the newest covering track, 1 for the next older one, and so on. ACT's
        temporal ensembling weighs the *oldest* prediction most; here the newest one
        dominates because it saw the freshest observation, and older ones smooth the
        switch. ``decay = 0`` is a plain mean; a large ``decay`` approaches ``latest``.
    ``crossfade``
        tracks are folded from oldest to newest: each newer track takes over from the
        plan of the older ones linearly, from its :attr:`Track.blend_from` (when it became
        known; no earlier than its ``t_start``) over ``min(crossfade_s, old plan end -
        blend_from)`` seconds, then follows the newer track alone. Before ``blend_from``
        the old plan stands. Shortening the window to the old plan's end means the blend
        has finished where the old plan stops, so the result never jumps there.

Guarantees (property-tested): the result has the tracks' width, is finite, and per
joint lies within the minimum and maximum of the contributing actions (the ones at
most one step from ``t`` in a covering track). Averages and blends are convex
combinations clamped to that range, so rounding cannot step outside it and two huge
values of opposite sign cannot overflow. Non-finite actions are refused when a track is
built (:class:`~.safety.UnsafeAction`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, get_args

from vla_edge.components.actuator.safety import check_vector

MergeName = Literal["latest", "average", "crossfade"]
MERGE_FUNCTIONS: tuple[str, ...] = get_args(MergeName)
SLOT_TOLERANCE = 1e-3
"""Fraction of a step within which a time counts as a grid point (and a span edge)."""

Vector = tuple[float, ...]


@dataclass(frozen=True)
class Track:
    """One chunk's actions on its time grid, in configuration joint order."""

    t_start: float
    dt: float
    actions: tuple[Vector, ...]
    blend_from: float | None = None
    """When a crossfade onto this track begins (its arrival time); ``None``: ``t_start``."""
    _t_end: float = field(init=False, repr=False, compare=False, default=0.0)

    def __post_init__(self) -> None:
        if not (math.isfinite(self.t_start) and math.isfinite(self.dt) and self.dt > 0):
            raise ValueError(f"a track needs a finite t_start and dt > 0, got {self.t_start!r}, {self.dt!r}")
        if self.blend_from is not None and not math.isfinite(self.blend_from):
            raise ValueError(f"blend_from must be finite, got {self.blend_from!r}")
        if not self.actions:
            raise ValueError("a track needs at least one action")
        width = len(self.actions[0])
        if width == 0:
            raise ValueError("actions need at least one joint")
        checked = tuple(check_vector(a, width, f"action {i}") for i, a in enumerate(self.actions))
        object.__setattr__(self, "actions", checked)
        object.__setattr__(self, "_t_end", self.t_start + (len(checked) - 1) * self.dt)

    @property
    def width(self) -> int:
        return len(self.actions[0])

    @property
    def t_end(self) -> float:
        """Time of the last action."""
        return self._t_end

    @property
    def blend_start(self) -> float:
        return self.t_start if self.blend_from is None else max(self.t_start, self.blend_from)

    def time(self, index: int) -> float:
        return self.t_start + index * self.dt

    def covers(self, t: float) -> bool:
        tolerance = SLOT_TOLERANCE * self.dt
        return self.t_start - tolerance <= t <= self.t_end + tolerance

    def at(self, t: float) -> Vector | None:
        """The track's value at ``t`` (linear between neighbouring actions), or ``None`` outside its span."""
        if not self.covers(t):
            return None
        last = len(self.actions) - 1
        position = (t - self.t_start) / self.dt
        nearest = round(position)
        if abs(position - nearest) <= SLOT_TOLERANCE:
            return self.actions[min(max(nearest, 0), last)]
        low = min(max(math.floor(position), 0), last)
        high = min(low + 1, last)
        return blend(self.actions[low], self.actions[high], min(max(position - low, 0.0), 1.0))

    def neighbours(self, t: float) -> list[Vector]:
        """The actions at most one step from ``t`` (what :meth:`at` may draw on); empty outside the span."""
        if not self.covers(t):
            return []
        return [a for i, a in enumerate(self.actions) if abs(self.time(i) - t) <= self.dt * (1 + SLOT_TOLERANCE)]


def blend(old: Sequence[float], new: Sequence[float], weight: float) -> Vector:
    """``(1 - weight) * old + weight * new`` per joint, kept within each joint's pair of values."""
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"blend weight must be within [0, 1], got {weight!r}")
    if weight == 0.0:
        return tuple(old)
    if weight == 1.0:
        return tuple(new)
    return tuple(min(max((1.0 - weight) * a + weight * b, min(a, b)), max(a, b)) for a, b in zip(old, new, strict=True))


def _check_widths(tracks: Sequence[Track]) -> None:
    widths = {track.width for track in tracks}
    if len(widths) > 1:
        raise ValueError(f"tracks of different widths {sorted(widths)} cannot be merged")


def _covering(tracks: Sequence[Track], t: float) -> list[Vector]:
    _check_widths(tracks)
    return [value for track in tracks if (value := track.at(t)) is not None]


def contributors(tracks: Sequence[Track], t: float) -> int:
    """How many tracks cover ``t``."""
    return sum(1 for track in tracks if track.covers(t))


def merge_latest(tracks: Sequence[Track], t: float) -> Vector | None:
    """The newest covering track's value at ``t``; ``None`` if no track covers ``t``."""
    _check_widths(tracks)
    for track in tracks:
        value = track.at(t)
        if value is not None:
            return value
    return None


def average_weights(count: int, decay: float) -> list[float]:
    """Weights ``exp(-decay * rank)`` for ranks ``0 .. count-1`` (newest first), summing to 1."""
    if not (math.isfinite(decay) and decay >= 0):
        raise ValueError(f"decay must be a finite number >= 0, got {decay!r}")
    raw = [math.exp(-decay * rank) for rank in range(count)]
    total = math.fsum(raw)
    return [w / total for w in raw]


def merge_average(tracks: Sequence[Track], t: float, decay: float) -> Vector | None:
    """Weighted average of the covering tracks' values at ``t`` (newest weighs most)."""
    values = _covering(tracks, t)
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    weights = average_weights(len(values), decay)
    merged = []
    for joint in zip(*values, strict=True):
        total = sum(w * v for w, v in zip(weights, joint, strict=True))  # may round past the range: clamped
        merged.append(min(max(total, min(joint)), max(joint)))
    return tuple(merged)


TIME_RESOLUTION_S = 1e-6
"""Wall-clock seconds near 1.7e9 resolve to about 0.24 µs: a window that ends within 1 µs has ended."""


def crossfade_weight(t: float, start: float, old_end: float, crossfade_s: float) -> float:
    """Share of the newer track at ``t``: 0 before ``start``, rising linearly to 1 by the window's end."""
    if not (math.isfinite(crossfade_s) and crossfade_s > 0):
        raise ValueError(f"crossfade_s must be a positive finite number, got {crossfade_s!r}")
    length = min(crossfade_s, old_end - start)
    if t < start:
        return 0.0
    if length <= 0 or t - start >= length - TIME_RESOLUTION_S:
        return 1.0
    return (t - start) / length


def merge_crossfade(tracks: Sequence[Track], t: float, crossfade_s: float) -> Vector | None:
    """Fold the covering tracks oldest to newest, each fading in over the plan before it."""
    _check_widths(tracks)
    plan: Vector | None = None
    plan_end: float | None = None
    for track in reversed(tracks):
        value = track.at(t)
        if value is not None:
            if plan is None or plan_end is None:
                plan = value
            else:
                plan = blend(plan, value, crossfade_weight(t, track.blend_start, plan_end, crossfade_s))
        plan_end = track.t_end if plan_end is None else max(plan_end, track.t_end)
    return plan


def merge(
    function: MergeName, tracks: Sequence[Track], t: float, *, decay: float = 0.5, crossfade_s: float = 0.2
) -> Vector | None:
    """Dispatch to the merge ``function`` named in the configuration."""
    if function == "latest":
        return merge_latest(tracks, t)
    if function == "average":
        return merge_average(tracks, t, decay)
    if function == "crossfade":
        return merge_crossfade(tracks, t, crossfade_s)
    raise ValueError(f"unknown merge function {function!r}; use one of {MERGE_FUNCTIONS}")
