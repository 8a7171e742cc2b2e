"""What a manifest needs to know about a LeRobot policy directory, read without torch.

Devices install only boto3 for the updater, so everything here reads files as plain
JSON: ``config.json`` for the policy type and its input/output features, and the JSON
header at the start of each ``.safetensors`` file for the weights' dtype and size (the
tensor data itself is never read).
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vla_edge.errors import ManifestError

SAFETENSORS_HEADER_LIMIT = 100 * 1024 * 1024
"""A safetensors header is JSON describing tensors; anything this large is not one."""

MEMORY_OVERHEAD = 0.25
"""Estimated memory = weight bytes at their stored dtype plus this fraction for activations and
buffers. It does not count the Python/torch runtime itself; override it when you know better."""

_LEROBOT_HINT = (
    "point at a directory written by a LeRobot policy's save_pretrained() "
    "(config.json with 'type', 'input_features' and 'output_features', and model.safetensors)"
)


@dataclass(frozen=True)
class PolicyConfig:
    """The parts of a LeRobot ``config.json`` the updater cares about."""

    policy_type: str
    input_features: dict[str, dict[str, Any]]
    output_features: dict[str, dict[str, Any]]


@dataclass(frozen=True)
class WeightsInfo:
    """Size of a model's weights: bytes on disk, parameter count and the dtype holding most bytes."""

    bytes: int
    parameters: int | None
    dtype: str | None

    def memory_mb(self) -> int:
        return max(1, math.ceil(self.bytes * (1.0 + MEMORY_OVERHEAD) / (1024 * 1024)))


def read_policy_config(directory: Path) -> PolicyConfig:
    """Policy type and features from ``directory/config.json``; ManifestError when it is not LeRobot's."""
    path = directory / "config.json"
    if not directory.is_dir():
        raise ManifestError(f"{directory} is not a directory; {_LEROBOT_HINT}")
    if not path.is_file():
        raise ManifestError(f"{directory} has no config.json, so it is not a LeRobot policy directory; {_LEROBOT_HINT}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ManifestError(f"{path} is not readable JSON ({exc}); re-save the policy with save_pretrained()") from exc
    if not isinstance(data, dict):
        raise ManifestError(f"{path} must hold a JSON object; {_LEROBOT_HINT}")
    policy_type = data.get("type")
    if not isinstance(policy_type, str) or not policy_type:
        raise ManifestError(f"{path} has no policy 'type' (act, diffusion, smolvla...); {_LEROBOT_HINT}")
    return PolicyConfig(
        policy_type=policy_type,
        input_features=_features(path, data, "input_features"),
        output_features=_features(path, data, "output_features"),
    )


def _features(path: Path, data: dict[str, Any], key: str) -> dict[str, dict[str, Any]]:
    raw = data.get(key)
    if not isinstance(raw, dict) or not raw:
        raise ManifestError(f"{path} has no '{key}' mapping; {_LEROBOT_HINT}")
    features: dict[str, dict[str, Any]] = {}
    for name, feature in raw.items():
        shape = feature.get("shape") if isinstance(feature, dict) else None
        kind = feature.get("type") if isinstance(feature, dict) else None
        if not isinstance(kind, str) or not isinstance(shape, list) or not all(
            isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in shape
        ):
            raise ManifestError(
                f"{path}: {key}.{name} needs a 'type' string and a 'shape' list of positive integers, got {feature!r}; "
                "re-save the policy with save_pretrained()"
            )
        features[name] = {"type": kind, "shape": list(shape)}
    return features


def read_weights_info(directory: Path) -> WeightsInfo:
    """Weights summed over every ``.safetensors`` file (policy and processors); other weight files by size."""
    suffixes = (".safetensors", ".bin", ".pt", ".pth")
    weights = sorted(p for p in directory.rglob("*") if p.is_file() and p.suffix in suffixes)
    if not any(p.parent == directory and p.name.startswith("model") for p in weights):
        raise ManifestError(f"{directory} has no model weights (model.safetensors); {_LEROBOT_HINT}")
    total = 0
    parameters: int | None = 0
    by_dtype: dict[str, int] = {}
    for path in weights:
        if path.suffix != ".safetensors":
            total += path.stat().st_size
            parameters = None
            continue
        for dtype, shape, size in _safetensors_tensors(path):
            total += size
            by_dtype[dtype] = by_dtype.get(dtype, 0) + size
            if parameters is not None:
                parameters += math.prod(shape)
    dominant = max(by_dtype, key=lambda d: by_dtype[d]) if by_dtype else None
    return WeightsInfo(bytes=total, parameters=parameters, dtype=dominant)


def _safetensors_tensors(path: Path) -> list[tuple[str, list[int], int]]:
    """(dtype, shape, byte size) of every tensor, from the file's header only."""
    try:
        with path.open("rb") as handle:
            prefix = handle.read(8)
            if len(prefix) != 8:
                raise ManifestError(f"{path} is too short to be a safetensors file; re-save the policy")
            (length,) = struct.unpack("<Q", prefix)
            if length > SAFETENSORS_HEADER_LIMIT:
                raise ManifestError(
                    f"{path} declares a {length}-byte header, so it is not a safetensors file; re-save the policy"
                )
            header = json.loads(handle.read(length).decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ManifestError(f"{path} has no readable safetensors header ({exc}); re-save the policy") from exc
    if not isinstance(header, dict):
        raise ManifestError(f"{path}: the safetensors header is not a JSON object; re-save the policy")
    tensors = []
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        try:
            start, end = entry["data_offsets"]
            tensors.append((str(entry["dtype"]), [int(n) for n in entry["shape"]], int(end) - int(start)))
        except (KeyError, TypeError, ValueError) as exc:
            raise ManifestError(f"{path}: tensor {name!r} has a malformed header entry; re-save the policy") from exc
    return tensors
