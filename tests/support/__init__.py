"""Shared test helpers and fakes (importable as ``support`` from any test folder)."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_for(condition: Callable[[], object], timeout: float = 10.0, interval: float = 0.02) -> object:
    """Poll until ``condition()`` is truthy; fail with a clear message after ``timeout``.

    Tests wait for *conditions*, never assert on durations: this machine is shared and noisy.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s: {getattr(condition, '__name__', condition)}")
