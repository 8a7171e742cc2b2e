"""Rate-limited logging: a problem that repeats every tick is logged once per interval, not 30 times a second.

The first occurrence of a kind is logged at once; repeats within ``interval_s`` are held
back and counted, and the next message that gets through says how many were held back,
so nothing is silently lost and the log stays readable during a long fault.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

WARNING_INTERVAL_S = 5.0
"""Repeated messages of one kind are logged at most this often."""


class RateLimitedLog:
    """Log messages of a ``kind`` at most once per ``interval_s``. Thread-safe."""

    def __init__(
        self,
        log: logging.Logger,
        interval_s: float = WARNING_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.log = log
        self.interval_s = interval_s
        self._clock = clock
        self._lock = threading.Lock()
        self._seen: dict[str, tuple[float, int]] = {}

    def warning(self, kind: str, message: str, *args: Any) -> bool:
        return self.emit(logging.WARNING, kind, message, *args)

    def error(self, kind: str, message: str, *args: Any) -> bool:
        return self.emit(logging.ERROR, kind, message, *args)

    def emit(self, level: int, kind: str, message: str, *args: Any) -> bool:
        """Log unless ``kind`` was logged within the interval; returns whether it was logged."""
        now = self._clock()
        with self._lock:
            last, held = self._seen.get(kind, (float("-inf"), 0))
            if now - last < self.interval_s:
                self._seen[kind] = (last, held + 1)
                return False
            self._seen[kind] = (now, 0)
        suffix = f" (and {held} more like it since the last one)" if held else ""
        self.log.log(level, message + "%s", *args, suffix)
        return True
