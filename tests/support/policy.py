"""Session-wide demo policy for the policy and inference tests (built once, in a temp cache).

Both test folders need the same demo policy; building it costs seconds (mostly importing
LeRobot), so the first request builds it and later ones reuse it. Never the real ~/.cache.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

_cache: dict[str, Any] = {}


def demo_cache_dir(factory: pytest.TempPathFactory) -> Path:
    """Cache directory that holds the demo policy (built on first use)."""
    if "cache" not in _cache:
        from vla_edge.policies import ensure_demo_policy

        cache = factory.mktemp("demo-cache")
        ensure_demo_policy(cache)
        _cache["cache"] = cache
    return _cache["cache"]


def demo_policy_path(factory: pytest.TempPathFactory) -> Path:
    from vla_edge.policies import demo_policy_dir

    return demo_policy_dir(demo_cache_dir(factory))


def loaded_demo_policy(factory: pytest.TempPathFactory) -> Any:
    """The demo policy loaded once with LeRobot's code (a LoadedPolicy)."""
    if "loaded" not in _cache:
        from vla_edge.policies import load_policy

        _cache["loaded"] = load_policy(demo_policy_path(factory), "cpu")
    return _cache["loaded"]
