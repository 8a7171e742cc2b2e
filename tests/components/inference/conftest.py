from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from policy_support import demo_cache_dir, demo_policy_path, loaded_demo_policy


@pytest.fixture(scope="session")
def demo_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return demo_cache_dir(tmp_path_factory)


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return demo_policy_path(tmp_path_factory)


@pytest.fixture(scope="session")
def demo_policy(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return loaded_demo_policy(tmp_path_factory)
