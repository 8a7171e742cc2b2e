"""Fixtures of the updater tests: moto's S3 server on loopback, buckets, tiny published models."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from support.model_dirs import published_model

from vla_edge.updater.manifest import ModelManifest


@pytest.fixture
def tiny(tmp_path: Path) -> tuple[Path, ModelManifest]:
    """A tiny published model (about 1.2 MB): its directory, manifest file included, and its manifest."""
    directory = tmp_path / "published" / "tiny"
    return directory, published_model(directory, weight_floats=300_000)


@pytest.fixture
def act_copy(act_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the session's ACT policy: building a manifest may write its identity file."""
    return Path(shutil.copytree(act_dir, tmp_path / "act-policy"))
