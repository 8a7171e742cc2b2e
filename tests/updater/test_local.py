"""Models from a local directory (a Greengrass artifact or a dev build): copied, resumed, verified."""

from __future__ import annotations

from pathlib import Path

import pytest

from vla_edge.errors import DownloadError, VerificationError
from vla_edge.models import directory_digest
from vla_edge.updater import local
from vla_edge.updater.local import LocalDirectorySource
from vla_edge.updater.manifest import ModelManifest
from vla_edge.updater.store import ModelStore


def test_copy_into_staging_and_install(tiny: tuple[Path, ModelManifest], tmp_path: Path) -> None:
    directory, manifest = tiny
    store = ModelStore(tmp_path / "store")
    with store.stage(manifest) as staging:
        LocalDirectorySource().fetch(directory, manifest, staging)
        model = store.install(staging, manifest)
    assert directory_digest(model.path) == manifest.sha256
    assert not store.staging_dir(manifest).exists()


def test_a_copy_resumes_from_its_part(tiny: tuple[Path, ModelManifest], tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    directory, manifest = tiny
    staging = tmp_path / "staging"
    staging.mkdir()
    weights = (directory / "model.safetensors").read_bytes()
    (staging / "model.safetensors.part").write_bytes(weights[:123_457])
    starts: list[tuple[str, int]] = []
    real = local._FileReader.read_range

    def spy(self, relative: str, start: int, end: int, size: int, piece: int):
        starts.append((relative, start))
        return real(self, relative, start, end, size, piece)

    monkeypatch.setattr(local._FileReader, "read_range", spy)
    LocalDirectorySource(chunk_size=100_000).fetch(directory, manifest, staging)

    assert [start for relative, start in starts if relative == "model.safetensors"][0] == 123_457
    assert directory_digest(staging) == manifest.sha256


def test_missing_or_short_source_files(tiny: tuple[Path, ModelManifest], tmp_path: Path) -> None:
    directory, manifest = tiny
    with pytest.raises(DownloadError, match="is not a directory"):
        LocalDirectorySource().fetch(tmp_path / "nowhere", manifest, tmp_path / "s1")
    weights = directory / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[:-4])
    with pytest.raises(VerificationError, match="shorter than the manifest"):
        LocalDirectorySource().fetch(directory, manifest, tmp_path / "s2")
    assert not (tmp_path / "s2" / "model.safetensors.part").exists()
    weights.unlink()
    with pytest.raises(DownloadError, match="does not exist; check that the artifact"):
        LocalDirectorySource().fetch(directory, manifest, tmp_path / "s3")
