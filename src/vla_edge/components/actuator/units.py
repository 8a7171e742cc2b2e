"""Joint units: the one place where servo ticks become degrees and back.

For now a joint angle is the raw STS3215 reading with 2048 ticks = 0° and
4096 ticks per 360°. LeRobot calibration (homing offsets, ranges, drive modes)
will replace these two functions, and only these.
"""

from __future__ import annotations

TICKS_PER_TURN = 4096
CENTER_TICKS = 2048
MAX_TICKS = TICKS_PER_TURN - 1


def ticks_to_degrees(ticks: int) -> float:
    return (ticks - CENTER_TICKS) * 360.0 / TICKS_PER_TURN


def degrees_to_ticks(degrees: float) -> int:
    """Nearest tick, clamped to the encoder range 0..4095."""
    ticks = round(degrees * TICKS_PER_TURN / 360.0) + CENTER_TICKS
    return min(max(ticks, 0), MAX_TICKS)
