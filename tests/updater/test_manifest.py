"""Manifests of real LeRobot policies (ACT, Diffusion) and of broken directories."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from support.model_dirs import tiny_policy_dir, write_safetensors

from vla_edge.errors import ManifestError, VerificationError
from vla_edge.models import IDENTITY_FILE, directory_digest, read_model_ref
from vla_edge.updater.hashing import combine_digest, file_sha256
from vla_edge.updater.manifest import (
    MANIFEST_FILE,
    ModelManifest,
    build_manifest,
    read_manifest,
    verify_directory,
    write_manifest,
)


def test_act_manifest_has_type_features_and_the_directory_digest(act_copy: Path) -> None:
    manifest = build_manifest(act_copy, name="act-test", version="1.0", robot="so101_follower", norm_mode="degrees")

    assert manifest.policy_type == "act"
    assert set(manifest.input_features) == {"observation.images.top", "observation.images.wrist", "observation.state"}
    assert manifest.input_features["observation.images.top"].type == "VISUAL"
    assert manifest.input_features["observation.images.top"].shape == [3, 48, 64]
    assert manifest.input_features["observation.state"].shape == [5]
    assert manifest.output_features["action"].shape == [5]
    assert (manifest.robot, manifest.norm_mode) == ("so101_follower", "degrees")
    assert manifest.sha256 == directory_digest(act_copy)
    assert read_model_ref(act_copy) == manifest.ref
    weights = (act_copy / "model.safetensors").stat().st_size
    assert manifest.weights.dtype == "F32"
    assert manifest.weights.parameters and manifest.weights.parameters * 4 <= manifest.weights.bytes <= weights * 1.01
    assert manifest.memory_estimated and manifest.memory_mb >= weights / 2**20
    assert {"config.json", "model.safetensors", IDENTITY_FILE} <= set(manifest.files)
    assert manifest.files["model.safetensors"].size == weights


def test_diffusion_manifest(diffusion_dir: Path, tmp_path: Path) -> None:
    directory = Path(shutil.copytree(diffusion_dir, tmp_path / "diffusion"))
    manifest = build_manifest(directory, version="7")

    assert manifest.policy_type == "diffusion"
    assert manifest.input_features["observation.images.front"].shape == [3, 48, 64]
    assert manifest.input_features["observation.state"].shape == [6]
    assert manifest.output_features["action"].type == "ACTION"
    assert manifest.name == "diffusion" and manifest.robot is None and manifest.norm_mode is None
    assert manifest.sha256 == directory_digest(directory) == read_model_ref(directory).sha256


def test_manifest_round_trips_and_is_not_part_of_the_digest(tmp_path: Path) -> None:
    directory = tiny_policy_dir(tmp_path / "m")
    manifest = build_manifest(directory, name="tiny", version="3", memory_mb=4096)
    written = write_manifest(manifest, directory)

    assert written == directory / MANIFEST_FILE
    assert read_manifest(directory) == manifest
    assert MANIFEST_FILE not in manifest.files
    assert (manifest.memory_mb, manifest.memory_estimated) == (4096, False)
    again = build_manifest(directory)  # name and version now come from the identity file
    assert (again.name, again.version, again.sha256) == ("tiny", "3", manifest.sha256)
    verify_directory(directory, manifest)  # the manifest file beside the model files is not "extra"
    # The directory with its manifest reports the same model as the files alone (what devices report).
    assert read_model_ref(directory).sha256 == directory_digest(directory) == manifest.sha256


def test_identity_file_is_updated_and_keeps_its_other_keys(tmp_path: Path) -> None:
    directory = tiny_policy_dir(tmp_path / "m")
    (directory / IDENTITY_FILE).write_text(json.dumps({"name": "arm-policy", "version": "1", "untrained": True}))

    manifest = build_manifest(directory, version="2")

    identity = json.loads((directory / IDENTITY_FILE).read_text())
    assert identity == {"name": "arm-policy", "version": "2", "untrained": True}
    assert read_model_ref(directory) == manifest.ref


def test_a_version_is_required(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="--version"):
        build_manifest(tiny_policy_dir(tmp_path / "m"))


def _no_config(d: Path) -> None:
    (d / "config.json").unlink()


def _bad_json(d: Path) -> None:
    (d / "config.json").write_text("{not json")


def _no_type(d: Path) -> None:
    (d / "config.json").write_text(json.dumps({"input_features": {}, "output_features": {}}))


def _no_outputs(d: Path) -> None:
    config = json.loads((d / "config.json").read_text())
    del config["output_features"]
    (d / "config.json").write_text(json.dumps(config))


def _bad_shape(d: Path) -> None:
    config = json.loads((d / "config.json").read_text())
    config["input_features"]["observation.state"]["shape"] = [0]
    (d / "config.json").write_text(json.dumps(config))


def _no_weights(d: Path) -> None:
    (d / "model.safetensors").unlink()


def _corrupt_weights(d: Path) -> None:
    (d / "model.safetensors").write_bytes(b"\xff" * 64)


@pytest.mark.parametrize(
    ("breakage", "says"),
    [
        (_no_config, "no config.json"),
        (_bad_json, "not readable JSON"),
        (_no_type, "no policy 'type'"),
        (_no_outputs, "no 'output_features'"),
        (_bad_shape, "positive integers"),
        (_no_weights, "no model weights"),
        (_corrupt_weights, "safetensors"),
    ],
)
def test_directories_that_are_not_lerobot_policies(tmp_path: Path, breakage, says: str) -> None:
    directory = tiny_policy_dir(tmp_path / "m")
    breakage(directory)
    with pytest.raises(ManifestError, match=says) as caught:
        build_manifest(directory, version="1")
    assert "save_pretrained" in str(caught.value) or "re-save" in str(caught.value) or "LeRobot" in str(caught.value)


def test_not_a_directory(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="not a directory"):
        build_manifest(tmp_path / "missing", version="1")


def test_weights_estimate_counts_dtype_bytes(tmp_path: Path) -> None:
    directory = tiny_policy_dir(tmp_path / "m")
    write_safetensors(directory / "model.safetensors", {"a": ("BF16", [1024, 1024]), "b": ("F32", [1000])})
    manifest = build_manifest(directory, version="1")
    assert manifest.weights.dtype == "BF16"
    assert manifest.weights.parameters == 1024 * 1024 + 1000
    assert manifest.memory_mb == 3  # 2 MiB of bf16 + 4 kB, plus 25 %, rounded up


@pytest.fixture
def good(tmp_path: Path) -> tuple[Path, ModelManifest]:
    directory = tiny_policy_dir(tmp_path / "m")
    return directory, build_manifest(directory, name="tiny", version="1")


def _edit(manifest: ModelManifest, **changes: object) -> bytes:
    data = manifest.model_dump(mode="json")
    data.update(changes)
    return json.dumps(data).encode()


def test_bad_manifests_are_refused(good: tuple[Path, ModelManifest], tmp_path: Path) -> None:
    _, manifest = good
    files = manifest.model_dump(mode="json")["files"]
    cases = {
        b"[1, 2]": "JSON object",
        b"{oops": "not valid JSON",
        _edit(manifest, sha256="0" * 64): "does not match its files",
        _edit(manifest, files={**files, "../etc/passwd": {"size": 1, "sha256": "0" * 64}}): "plain relative path",
        _edit(manifest, files={**files, "/abs": {"size": 1, "sha256": "0" * 64}}): "plain relative path",
        _edit(manifest, name="../x"): "name",
        _edit(manifest, format=2): "newer than this vla-edge",
        _edit(manifest, surprise=1): "surprise",
        _edit(manifest, norm_mode="radians"): "norm_mode",
    }
    for data, says in cases.items():
        with pytest.raises(ManifestError, match=says):
            ModelManifest.from_json_bytes(data)
    without_policy_type = manifest.model_dump(mode="json")
    del without_policy_type["policy_type"]
    with pytest.raises(ManifestError, match="policy_type"):
        ModelManifest.from_json_bytes(json.dumps(without_policy_type).encode())
    with pytest.raises(ManifestError, match="does not exist"):
        read_manifest(tmp_path / "nowhere.json")


def test_verify_directory_names_the_file_and_what_differs(good: tuple[Path, ModelManifest]) -> None:
    directory, manifest = good
    verify_directory(directory, manifest)
    weights = directory / "model.safetensors"
    original = weights.read_bytes()

    weights.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
    with pytest.raises(VerificationError, match=r"model\.safetensors: sha256 [0-9a-f]{64}, the manifest says"):
        verify_directory(directory, manifest)
    weights.write_bytes(original[:-10])
    with pytest.raises(VerificationError, match=rf"size {len(original) - 10} bytes, the manifest says {len(original)}"):
        verify_directory(directory, manifest)
    weights.unlink()
    with pytest.raises(VerificationError, match="missing, first model.safetensors"):
        verify_directory(directory, manifest)
    weights.write_bytes(original)
    (directory / "extras" / "stray.bin").write_bytes(b"x")
    with pytest.raises(VerificationError, match="extras/stray.bin is not in the manifest"):
        verify_directory(directory, manifest)


def test_combined_digest_equals_directory_digest_with_nested_paths(tmp_path: Path) -> None:
    # "a/b" sorts before "a-b" as a Path (by parts) but after it as a string: the digest must follow Path.
    for relative in ("a/b", "a-b", "a.b/c", "z", "a/b2/c"):
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text(relative)
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    digests = {p.relative_to(tmp_path).as_posix(): file_sha256(p).hexdigest() for p in files}
    assert combine_digest(digests) == directory_digest(tmp_path)
