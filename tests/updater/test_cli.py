"""``vla-edge model manifest``: output, files written, one-line errors with exit code 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.model_dirs import tiny_policy_dir

from vla_edge.models import directory_digest, read_model_ref
from vla_edge.updater.cli import main
from vla_edge.updater.manifest import MANIFEST_FILE, read_manifest


def test_manifest_of_the_act_policy_written_into_the_directory(act_copy: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["manifest", str(act_copy), "--name", "pick-cube", "--version", "2.1", "--robot", "so101_follower",
                 "--norm-mode", "range_m100_100"])

    out, err = capsys.readouterr()
    assert code == 0 and err == ""
    manifest = read_manifest(act_copy / MANIFEST_FILE)
    assert (manifest.name, manifest.version, manifest.policy_type) == ("pick-cube", "2.1", "act")
    assert (manifest.robot, manifest.norm_mode) == ("so101_follower", "range_m100_100")
    assert manifest.sha256 in out and str(act_copy / MANIFEST_FILE) in out
    # the manifest file now sits in the directory; the model's own files still digest to the manifest's sha256
    (act_copy / MANIFEST_FILE).unlink()
    assert directory_digest(act_copy) == manifest.sha256 == read_model_ref(act_copy).sha256


def test_print_writes_json_to_stdout_and_no_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    directory = tiny_policy_dir(tmp_path / "m")
    assert main(["manifest", str(directory), "--version", "1", "--memory-mb", "512", "--print"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["memory_mb"] == 512 and data["memory_estimated"] is False
    assert not (directory / MANIFEST_FILE).exists()


def test_output_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    directory = tiny_policy_dir(tmp_path / "m")
    target = tmp_path / "out.json"
    assert main(["manifest", str(directory), "--version", "1", "--output", str(target)]) == 0
    assert read_manifest(target).version == "1"
    assert not (directory / MANIFEST_FILE).exists()


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["manifest"], "required: DIR"),
        (["manifest", "{tmp}/missing", "--version", "1"], "not a directory"),
        (["manifest", "{tmp}/m"], "--version"),
        (["manifest", "{tmp}/m", "--version", "1", "--norm-mode", "radians"], "invalid choice"),
        (["manifest", "{tmp}/m", "--version", "1", "--memory-mb", "0"], "--memory-mb"),
        (["manifest", "{tmp}/m", "--version", "1", "--print", "--output", "x.json"], "not allowed with"),
        (["manifest", "{tmp}/m", "--version", "1", "--output", "{tmp}/no/such/dir/x.json"], "not a directory"),
        (["manifest", "{tmp}/m", "--version", "../1"], "version"),
        (["bogus"], "invalid choice"),
    ],
)
def test_errors_are_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str],
                                         says: str) -> None:
    tiny_policy_dir(tmp_path / "m")
    code = main([arg.replace("{tmp}", str(tmp_path)) for arg in args])
    out, err = capsys.readouterr()
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1 and says in err
