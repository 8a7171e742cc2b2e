"""Fixtures shared by every test folder (folder-specific ones live in that folder's conftest)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.policy import (
    demo_cache_dir,
    demo_policy_path,
    loaded_demo_policy,
    loaded_policy,
    policy_path,
)
from support.s3 import CuttingProxy, MotoS3

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


@pytest.fixture(scope="session")
def demo_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache directory holding the untrained demo policy, built once per session."""
    return demo_cache_dir(tmp_path_factory)


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return demo_policy_path(tmp_path_factory)


@pytest.fixture(scope="session")
def demo_policy(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The demo policy loaded once with LeRobot's own loading code."""
    return loaded_demo_policy(tmp_path_factory)


# Small real LeRobot policies (ACT, Diffusion), built once per session in tests/support/policy.py.


@pytest.fixture(scope="session")
def act_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return policy_path(tmp_path_factory, "act")


@pytest.fixture(scope="session")
def diffusion_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return policy_path(tmp_path_factory, "diffusion")


@pytest.fixture(scope="session")
def act_policy(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return loaded_policy(tmp_path_factory, "act")


@pytest.fixture(scope="session")
def diffusion_policy(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return loaded_policy(tmp_path_factory, "diffusion")


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[MotoS3]:
    """moto's S3 server on loopback (real HTTP), started once when a test first asks for it."""
    server = MotoS3()
    yield server
    server.stop()


@pytest.fixture
def bucket(moto_s3: MotoS3) -> Iterator[str]:
    yield moto_s3.new_bucket()
    moto_s3.reset()


@pytest.fixture
def proxy(moto_s3: MotoS3) -> Iterator[CuttingProxy]:
    """A TCP proxy in front of moto that can cut connections mid-body."""
    server = CuttingProxy(moto_s3.address)
    yield server
    server.stop()
