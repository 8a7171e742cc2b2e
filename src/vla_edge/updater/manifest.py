"""The model manifest: what a model is, file by file, and what it needs to run.

A manifest is written on the build machine (``vla-edge model manifest DIR``), uploaded
beside the model's files, and is the only thing a device trusts when it downloads: every
file's size and sha256, the model's digest, the LeRobot policy type and features, the
robot and joint units it was trained for, and the memory it needs.

Where the manifest lives, and why it is not part of the digest
    ``sha256`` equals :func:`vla_edge.models.directory_digest` of the model directory,
    the digest every component reports in a ``ModelRef``. A file cannot contain its own
    digest, so ``vla_edge_manifest.json`` is never one of the model's files: it is left
    out of ``files`` and of ``sha256``. Next to the published files it sits inside the
    source directory (so one upload carries both); in the device's model store it is
    kept *beside* the installed directory, so the installed directory hashes to exactly
    ``sha256`` and the ModelRef the inference component reports matches the manifest.

The identity file
    ``vla_edge_model.json`` (name and version, read by every component) is one of the
    model's hashed files. :func:`build_manifest` writes or updates it when the name or
    version given differs, so the directory names itself the way the manifest does, and
    a manifest always lists it.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime, UTC
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from vla_edge.errors import ManifestError, VerificationError
from vla_edge.messages import ModelRef
from vla_edge.models import IDENTITY_FILE, MANIFEST_FILE, write_identity
from vla_edge.updater._fs import atomic_write_bytes
from vla_edge.updater.hashing import combine_digest, file_sha256
from vla_edge.updater.policy_info import read_policy_config, read_weights_info

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
MAX_MANIFEST_BYTES = 16 * 1024 * 1024
"""A manifest lists files, not data; a larger one is not a manifest."""

SAFE_NAME = r"^[A-Za-z0-9][A-Za-z0-9._+-]*$"
"""Names and versions become directory names on the device, so no separators and no leading dot."""
_HEX64 = r"^[0-9a-f]{64}$"

NormMode = Literal["degrees", "range_m100_100"]


class FileEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    size: int = Field(ge=0)
    sha256: str = Field(pattern=_HEX64)


class Feature(BaseModel):
    """A LeRobot policy feature as ``config.json`` stores it: ``VISUAL``/``STATE``/``ACTION`` and a shape."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: str = Field(min_length=1)
    shape: list[int] = Field(min_length=1)

    @field_validator("shape")
    @classmethod
    def _positive(cls, value: list[int]) -> list[int]:
        if any(n <= 0 for n in value):
            raise ValueError(f"shape {value} must be positive integers")
        return value


class WeightsSummary(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    bytes: int = Field(ge=0)
    parameters: int | None = Field(default=None, ge=0)
    dtype: str | None = None
    """The safetensors dtype holding most of the weight bytes (``F32``, ``BF16``...)."""


class ModelManifest(BaseModel):
    """Everything a device checks before a model may serve; see the module docstring for the rules."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal[1] = FORMAT_VERSION
    name: str = Field(min_length=1, max_length=200, pattern=SAFE_NAME)
    version: str = Field(min_length=1, max_length=100, pattern=SAFE_NAME)
    sha256: str = Field(pattern=_HEX64)
    files: dict[str, FileEntry] = Field(min_length=1)
    policy_type: str = Field(min_length=1, max_length=100)
    input_features: dict[str, Feature] = Field(min_length=1)
    output_features: dict[str, Feature] = Field(min_length=1)
    robot: str | None = Field(default=None, min_length=1, max_length=100)
    norm_mode: NormMode | None = None
    memory_mb: int = Field(gt=0)
    memory_estimated: bool = True
    """True when ``memory_mb`` is the weights-based estimate, False when someone gave it."""
    weights: WeightsSummary
    created: datetime

    @field_validator("files")
    @classmethod
    def _safe_paths(cls, value: dict[str, FileEntry]) -> dict[str, FileEntry]:
        for relative in value:
            check_relative_path(relative)
        return value

    @model_validator(mode="after")
    def _consistent(self) -> ModelManifest:
        for required in ("config.json", IDENTITY_FILE):
            if required not in self.files:
                raise ValueError(f"files must include {required}; rebuild the manifest with `vla-edge model manifest`")
        expected = combine_digest({path: entry.sha256 for path, entry in self.files.items()})
        if expected != self.sha256:
            raise ValueError(f"sha256 {self.sha256} does not match its files (they digest to {expected})")
        return self

    @property
    def ref(self) -> ModelRef:
        """The ModelRef every component reports for this model once installed."""
        return ModelRef(name=self.name, version=self.version, sha256=self.sha256)

    @property
    def total_bytes(self) -> int:
        return sum(entry.size for entry in self.files.values())

    def to_json_bytes(self) -> bytes:
        return (json.dumps(self.model_dump(mode="json"), indent=2) + "\n").encode()

    @classmethod
    def from_json_bytes(cls, data: bytes | str, source: str = "manifest") -> ModelManifest:
        """Parse and validate; ManifestError saying which field is wrong and where it came from."""
        if len(data) > MAX_MANIFEST_BYTES:
            raise ManifestError(f"{source} is {len(data)} bytes, larger than any manifest; is it the right file?")
        try:
            raw = json.loads(data)
        except (UnicodeDecodeError, ValueError) as exc:
            raise ManifestError(
                f"{source} is not valid JSON ({exc}); regenerate it with `vla-edge model manifest`"
            ) from exc
        if not isinstance(raw, dict):
            raise ManifestError(f"{source} must be a JSON object; regenerate it with `vla-edge model manifest`")
        found = raw.get("format")
        if isinstance(found, int) and found > FORMAT_VERSION:
            raise ManifestError(
                f"{source} has manifest format {found}, newer than this vla-edge understands ({FORMAT_VERSION}); "
                "update vla-edge on the device"
            )
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            raise ManifestError(f"{source} is not a valid manifest: {_summarise(exc)}") from exc


def _summarise(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors()[:5]:
        where = ".".join(str(p) for p in error["loc"]) or "manifest"
        parts.append(f"{where}: {error['msg']}")
    more = len(exc.errors()) - len(parts)
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


def check_relative_path(relative: str) -> str:
    """A manifest file path must stay inside the model directory: relative, posix, no ``..``."""
    pure = PurePosixPath(relative)
    bad = (
        not relative
        or "\\" in relative
        or "\0" in relative
        or pure.is_absolute()
        or pure.as_posix() != relative
        or any(part in ("", ".", "..") for part in pure.parts)
        or relative == MANIFEST_FILE
        or relative.endswith(".part")
    )
    if bad:
        raise ValueError(f"file path {relative!r} must be a plain relative path inside the model directory")
    return relative


def model_files(directory: Path) -> dict[str, Path]:
    """Every file of the model in ``directory`` by relative posix path (the manifest itself left out)."""
    return {
        path.relative_to(directory).as_posix(): path
        for path in directory.rglob("*")
        if path.is_file() and path.relative_to(directory).as_posix() != MANIFEST_FILE
    }


def build_manifest(
    directory: Path,
    name: str | None = None,
    version: str | None = None,
    robot: str | None = None,
    norm_mode: NormMode | None = None,
    memory_mb: int | None = None,
) -> ModelManifest:
    """Describe the LeRobot policy in ``directory``; may write its identity file (see the module docstring).

    ``name`` defaults to the identity file's, then to the directory name; ``version`` to the
    identity file's (a manifest without a version cannot be told apart from the next one, so
    there is no fallback). ``memory_mb`` defaults to an estimate from the weights.
    """
    directory = Path(directory)
    config = read_policy_config(directory)
    weights = read_weights_info(directory)
    identity = _read_identity(directory)
    name = name or identity.get("name") or directory.resolve().name
    version = version or identity.get("version")
    if not version:
        raise ManifestError(f"{directory} has no version: pass --version (or write one in {IDENTITY_FILE})")
    if identity.get("name") != name or identity.get("version") != version:
        extra = {k: v for k, v in identity.items() if k not in ("name", "version")}
        log.info("writing %s in %s: name %s, version %s", IDENTITY_FILE, directory, name, version)
        write_identity(directory, str(name), str(version), **extra)
    started = time.monotonic()
    files = {relative: _entry(path) for relative, path in sorted(model_files(directory).items())}
    log.info("hashed %d files of %s in %.1f s", len(files), directory, time.monotonic() - started)
    fields: dict[str, Any] = {
        "name": name,
        "version": version,
        "sha256": combine_digest({relative: entry["sha256"] for relative, entry in files.items()}),
        "files": files,
        "policy_type": config.policy_type,
        "input_features": config.input_features,
        "output_features": config.output_features,
        "robot": robot,
        "norm_mode": norm_mode,
        "memory_mb": memory_mb if memory_mb is not None else weights.memory_mb(),
        "memory_estimated": memory_mb is None,
        "weights": {"bytes": weights.bytes, "parameters": weights.parameters, "dtype": weights.dtype},
        "created": datetime.now(UTC),
    }
    try:
        return ModelManifest.model_validate(fields)
    except ValidationError as exc:
        raise ManifestError(f"cannot describe {directory}: {_summarise(exc)}") from exc


def _read_identity(directory: Path) -> dict[str, Any]:
    path = directory / IDENTITY_FILE
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ManifestError(f"{path} is not valid JSON ({exc}); fix or delete it and pass --name/--version") from exc
    if not isinstance(data, dict):
        raise ManifestError(f"{path} must be a JSON object with 'name' and 'version'; fix or delete it")
    return data


def _entry(path: Path) -> dict[str, Any]:
    return {"size": path.stat().st_size, "sha256": file_sha256(path).hexdigest()}


def manifest_path(path: Path) -> Path:
    """``path`` itself when it names a file, ``path/vla_edge_manifest.json`` when it is a directory."""
    path = Path(path)
    return path / MANIFEST_FILE if path.is_dir() else path


def write_manifest(manifest: ModelManifest, path: Path) -> Path:
    """Write ``manifest`` atomically to a file, or into a directory as ``vla_edge_manifest.json``."""
    target = manifest_path(path)
    if not target.parent.is_dir():
        raise ManifestError(f"cannot write {target}: {target.parent} is not a directory")
    try:
        atomic_write_bytes(target, manifest.to_json_bytes())
    except OSError as exc:
        raise ManifestError(f"cannot write {target}: {exc}") from exc
    return target


def read_manifest(path: Path) -> ModelManifest:
    """Read a manifest file, or ``vla_edge_manifest.json`` inside a model directory."""
    target = manifest_path(path)
    try:
        data = target.read_bytes()
    except FileNotFoundError as exc:
        raise ManifestError(f"{target} does not exist; create it with `vla-edge model manifest DIR`") from exc
    except OSError as exc:
        raise ManifestError(f"cannot read {target}: {exc}") from exc
    return ModelManifest.from_json_bytes(data, source=str(target))


def verify_directory(directory: Path, manifest: ModelManifest) -> None:
    """Check that ``directory`` holds exactly the manifest's files with their sizes and sha256.

    Sizes are checked for every file before any is hashed (a truncated copy fails in
    milliseconds, not after hashing gigabytes). An extra file fails too: it would change
    the directory's digest, so the ModelRef reported would not be the manifest's.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise VerificationError(f"{directory} does not exist; download the model again")
    present = model_files(directory)
    missing = sorted(set(manifest.files) - set(present))
    if missing:
        raise VerificationError(f"{directory}: {len(missing)} file(s) of the manifest are missing, first {missing[0]}")
    extra = sorted(set(present) - set(manifest.files))
    if extra:
        raise VerificationError(
            f"{directory}: {extra[0]} is not in the manifest ({len(extra)} unexpected file(s)); "
            "it would change the model's digest; remove it or rebuild the manifest"
        )
    for relative, entry in manifest.files.items():
        size = present[relative].stat().st_size
        if size != entry.size:
            raise VerificationError(f"{directory / relative}: size {size} bytes, the manifest says {entry.size}")
    started = time.monotonic()
    for relative, entry in manifest.files.items():
        actual = file_sha256(present[relative]).hexdigest()
        if actual != entry.sha256:
            raise VerificationError(f"{directory / relative}: sha256 {actual}, the manifest says {entry.sha256}")
    log.info("verified %s (%d files, %d bytes) in %.1f s", directory, len(present), manifest.total_bytes,
             time.monotonic() - started)
    identity = _read_identity_for_check(directory / IDENTITY_FILE)
    if (identity.get("name"), identity.get("version")) != (manifest.name, manifest.version):
        raise VerificationError(
            f"{directory / IDENTITY_FILE} names {identity.get('name')} {identity.get('version')}, the manifest "
            f"{manifest.name} {manifest.version}; rebuild the manifest"
        )


def _read_identity_for_check(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise VerificationError(f"{path} is not valid JSON ({exc})") from exc
    return data if isinstance(data, dict) else {}
