"""Fixtures for model switching: two versions of one ACT model, version 1 loaded once per session."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from support.policy import act_versions

from vla_edge import messages
from vla_edge.models import read_model_ref

_loaded: dict[str, Any] = {}


@pytest.fixture(scope="session")
def act_v1_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return act_versions(tmp_path_factory)[0]


@pytest.fixture(scope="session")
def act_v2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return act_versions(tmp_path_factory)[1]


@pytest.fixture(scope="session")
def v1_ref(act_v1_dir: Path) -> messages.ModelRef:
    return read_model_ref(act_v1_dir)


@pytest.fixture(scope="session")
def v2_ref(act_v2_dir: Path) -> messages.ModelRef:
    return read_model_ref(act_v2_dir)


@pytest.fixture(scope="session")
def act_v1_policy(act_v1_dir: Path) -> Any:
    """Version 1 loaded with LeRobot's code, once: the model each switching test starts serving."""
    if "v1" not in _loaded:
        from vla_edge.policies import load_policy

        _loaded["v1"] = load_policy(act_v1_dir, "cpu")
    return _loaded["v1"]
