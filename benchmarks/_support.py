"""Pieces the benchmarks share: a one-topic benchmark recipe and a bus connected as a component."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml


def bench_recipe(directory: Path, name: str, operation: str, topic: str) -> Path:
    """A recipe for ``name`` that grants exactly ``operation`` on ``topic`` and nothing else."""
    recipe = {"RecipeFormatVersion": "2020-01-25", "ComponentName": name, "ComponentVersion": "1.0.0",
              "ComponentConfiguration": {"DefaultConfiguration": {"accessControl": {"aws.greengrass.ipc.pubsub": {
                  f"{name}:pubsub:1": {"operations": [operation], "resources": [topic]}}}}}}
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def connect(bus_type: Any, environment: Mapping[str, str], timeout: float = 30.0) -> Any:
    """``bus_type.connect`` as the component ``environment`` names (bus_type: GreengrassIpcBus, imported late)."""
    return bus_type.connect(timeout=timeout, environment=environment)
