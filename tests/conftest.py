"""Fixtures shared by every test folder (folder-specific ones live in that folder's conftest)."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from vla_edge.bus.memory import InMemoryBroker


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


@pytest.fixture
def broker() -> InMemoryBroker:
    return InMemoryBroker()


@pytest.fixture
def cache_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """A model cache that is never the real ~/.cache."""
    path = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("VLA_EDGE_CACHE", str(path))
    return path
