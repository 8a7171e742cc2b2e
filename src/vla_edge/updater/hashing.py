"""sha256 of files and of whole model directories, the same way :mod:`vla_edge.models` does it.

A model's digest is built from each file's relative path and sha256, so it can be
computed from a manifest's file list alone (no file needed) and checked against the
``sha256`` the manifest claims. :func:`combine_digest` must stay byte-for-byte the same as
:func:`vla_edge.models.directory_digest`: that is the digest the inference and
model-updater components report in every ``ModelRef``, and the tests pin the equality.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

READ_CHUNK = 1 << 20
"""Files are hashed in 1 MiB reads: memory stays flat however large the weights are."""


def file_sha256(path: Path, limit: int | None = None) -> hashlib._Hash:
    """A sha256 object fed with the first ``limit`` bytes of ``path`` (all of it when None).

    Returned unfinished so a resumed download can keep feeding it the bytes still to come.
    """
    digest = hashlib.sha256()
    remaining = limit
    with path.open("rb") as handle:
        while remaining is None or remaining > 0:
            want = READ_CHUNK if remaining is None else min(READ_CHUNK, remaining)
            block = handle.read(want)
            if not block:
                break
            digest.update(block)
            if remaining is not None:
                remaining -= len(block)
    return digest


def path_sort_key(relative: str) -> tuple[str, ...]:
    """Order of files in the digest: ``Path`` objects sort by their parts, not by the joined string."""
    return PurePosixPath(relative).parts


def combine_digest(file_digests: Mapping[str, str]) -> str:
    """Model digest from ``{relative posix path: file sha256 hex}``, equal to ``directory_digest``."""
    outer = hashlib.sha256()
    for relative in sorted(file_digests, key=path_sort_key):
        outer.update(relative.encode() + b"\0" + bytes.fromhex(file_digests[relative]))
    return outer.hexdigest()
