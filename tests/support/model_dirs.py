"""Tiny LeRobot-shaped model directories for updater tests that need many models quickly.

They have what the updater reads (a ``config.json`` with type and features, a
``model.safetensors`` with a valid header, processor files, a nested file) but are not
loadable policies; tests that need a real LeRobot directory use the ``act_dir`` and
``diffusion_dir`` fixtures.
"""

from __future__ import annotations

import json
import random
import struct
from pathlib import Path

from vla_edge.updater.manifest import ModelManifest, build_manifest, write_manifest


def write_safetensors(path: Path, tensors: dict[str, tuple[str, list[int]]], seed: int = 0) -> None:
    """A safetensors file whose tensors hold random bytes: ``{name: (dtype, shape)}``."""
    sizes = {"F32": 4, "F16": 2, "BF16": 2, "I64": 8, "U8": 1}
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, (dtype, shape) in tensors.items():
        size = sizes[dtype]
        for n in shape:
            size *= n
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    encoded = json.dumps(header).encode()
    encoded += b" " * (-len(encoded) % 8)
    rng = random.Random(seed)
    path.write_bytes(struct.pack("<Q", len(encoded)) + encoded + rng.randbytes(offset))


def tiny_policy_dir(
    directory: Path, weight_floats: int = 50_000, seed: int = 0, policy_type: str = "act", joints: int = 6
) -> Path:
    """A small LeRobot-shaped directory (no identity file yet: build_manifest writes it)."""
    directory.mkdir(parents=True, exist_ok=True)
    config = {
        "type": policy_type,
        "input_features": {
            "observation.images.front": {"type": "VISUAL", "shape": [3, 48, 64]},
            "observation.state": {"type": "STATE", "shape": [joints]},
        },
        "output_features": {"action": {"type": "ACTION", "shape": [joints]}},
        "seed": seed,
    }
    (directory / "config.json").write_text(json.dumps(config, indent=2))
    write_safetensors(directory / "model.safetensors", {"weight": ("F32", [weight_floats])}, seed=seed)
    (directory / "policy_preprocessor.json").write_text(json.dumps({"name": "pre", "steps": []}))
    (directory / "extras").mkdir(exist_ok=True)
    (directory / "extras" / "notes.txt").write_text(f"seed {seed}\n")
    return directory


def published_model(directory: Path, name: str = "tiny", version: str = "1", **kwargs: object) -> ModelManifest:
    """A tiny model directory with its identity file and ``vla_edge_manifest.json`` written."""
    tiny_policy_dir(directory, **kwargs)  # type: ignore[arg-type]
    manifest = build_manifest(directory, name=name, version=version)
    write_manifest(manifest, directory)
    return manifest
