"""Small real LeRobot policies (ACT, Diffusion), built once per session in tests/support/policy.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from support.policy import loaded_policy, policy_path


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
