"""Model identity: which policy directory is which, without importing torch.

A model is a LeRobot pretrained directory (``config.json``, ``model.safetensors``,
processor files). Its identity is a name, a version and a sha256 over every file
(relative path and content), so two devices report the same digest exactly when they
run byte-identical models. The name and version come from ``vla_edge_model.json`` in the
directory when present, otherwise from the directory name.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from vla_edge.errors import ConfigurationError
from vla_edge.messages import ModelRef

IDENTITY_FILE = "vla_edge_model.json"
MANIFEST_FILE = "vla_edge_manifest.json"
"""The delivery manifest (:mod:`vla_edge.updater.manifest`) describes the files; it is not one of them."""
_CHUNK = 1 << 20


def default_cache_dir() -> Path:
    """Where demo models and downloads live: ``$VLA_EDGE_CACHE`` or ``$XDG_CACHE_HOME/vla-edge``."""
    explicit = os.environ.get("VLA_EDGE_CACHE")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "vla-edge"


def directory_digest(path: Path) -> str:
    """sha256 over (relative path, file sha256) of every regular file, in sorted order.

    A ``vla_edge_manifest.json`` at the top is left out: it lists the digest, so it cannot be
    part of it, and a source directory carrying its manifest must report the same model."""
    if not path.is_dir():
        raise ConfigurationError(f"model directory {path} does not exist; check the policy path")
    outer = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file() and p != path / MANIFEST_FILE):
        inner = hashlib.sha256()
        with file.open("rb") as handle:
            while block := handle.read(_CHUNK):
                inner.update(block)
        outer.update(file.relative_to(path).as_posix().encode() + b"\0" + inner.digest())
    return outer.hexdigest()


def write_identity(path: Path, name: str, version: str, **extra: object) -> None:
    (path / IDENTITY_FILE).write_text(json.dumps({"name": name, "version": version, **extra}, indent=2) + "\n")


def read_model_ref(path: Path) -> ModelRef:
    """Identity of the model in ``path``; raises ConfigurationError when it is not a model directory."""
    if not (path / "config.json").is_file():
        raise ConfigurationError(
            f"{path} is not a LeRobot model directory (no config.json); point the policy path at a "
            "directory written by a policy's save_pretrained()"
        )
    name, version = path.name, "unversioned"
    identity = path / IDENTITY_FILE
    if identity.is_file():
        try:
            data = json.loads(identity.read_text())
            name, version = str(data["name"]), str(data["version"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigurationError(f"{identity} is not valid: needs JSON with 'name' and 'version'") from exc
    return ModelRef(name=name, version=version, sha256=directory_digest(path))


DEMO_MODEL_DIRNAME = "demo-act-untrained"


def demo_model_dir(cache_dir: Path | None = None) -> Path:
    """Where the demo policy lives (created by the inference component on first start)."""
    return (cache_dir or default_cache_dir()) / "models" / DEMO_MODEL_DIRNAME


def resolve_model_path(configured: str, cache_dir: Path | None = None) -> Path:
    """The configured policy directory, or the demo policy's when none is configured."""
    return Path(configured).expanduser() if configured else demo_model_dir(cache_dir)
