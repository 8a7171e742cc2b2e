"""Fixtures shared by every test folder (folder-specific ones live in that folder's conftest)."""

from __future__ import annotations

import pytest

from vla_edge.bus.memory import InMemoryBroker


@pytest.fixture
def broker() -> InMemoryBroker:
    return InMemoryBroker()


@pytest.fixture
def cache_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """A model cache that is never the real ~/.cache."""
    path = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("VLA_EDGE_CACHE", str(path))
    return path


@pytest.fixture(autouse=True, scope="session")
def _offline() -> None:
    """Nothing may be downloaded from a model hub while tests run."""
    import os

    os.environ["HF_HUB_OFFLINE"] = "1"
