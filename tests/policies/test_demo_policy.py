"""The demo policy: a real LeRobot ACT directory, built once, reloadable with LeRobot's code."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vla_edge import models
from vla_edge.policies import demo, ensure_demo_policy, is_demo_policy, load_policy
from vla_edge.policies.loading import REQUIRED_FILES


def test_demo_policy_directory_is_complete(demo_cache: Path, demo_dir: Path) -> None:
    assert demo_dir == models.demo_model_dir(demo_cache)  # where the model-updater looks
    for name in (*REQUIRED_FILES, models.IDENTITY_FILE):
        assert (demo_dir / name).is_file(), name
    identity = json.loads((demo_dir / models.IDENTITY_FILE).read_text())
    assert (identity["name"], identity["version"], identity["untrained"]) == ("demo-act-untrained", "0.0.1", True)
    ref = models.read_model_ref(demo_dir)
    assert (ref.name, ref.version) == ("demo-act-untrained", "0.0.1")
    assert is_demo_policy(demo_dir)
    # built in a staging directory and renamed: nothing else is left beside it
    assert [p.name for p in demo_dir.parent.iterdir()] == [demo_dir.name]
    config = json.loads((demo_dir / "config.json").read_text())
    assert config["type"] == "act" and config["pretrained_backbone_weights"] is None


def test_second_call_returns_the_existing_directory_without_rebuilding(
    demo_cache: Path, demo_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = {p.name: p.stat().st_mtime_ns for p in demo_dir.iterdir()}

    def no_rebuild(directory: Path) -> None:
        raise AssertionError("the demo policy was rebuilt")

    monkeypatch.setattr(demo, "_build", no_rebuild)
    assert ensure_demo_policy(demo_cache) == demo_dir
    assert {p.name: p.stat().st_mtime_ns for p in demo_dir.iterdir()} == before


def test_demo_policy_reloads_with_lerobot_and_predicts_degrees(demo_dir: Path) -> None:
    policy = load_policy(demo_dir, "cpu")
    assert policy.policy_type == "act"
    assert type(policy.policy).__name__ == "ACTPolicy"
    assert {k: tuple(v.shape) for k, v in policy.input_features.items()} == {
        "observation.images.front": (3, 120, 160),
        "observation.state": (6,),
    }
    assert {k: tuple(v.shape) for k, v in policy.output_features.items()} == {"action": (6,)}
    rng = np.random.default_rng(1)
    observation = policy.build_observation(
        {"front": rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)}, np.zeros(6), "demo"
    )
    actions = policy.predict_chunk(observation)
    assert actions.shape == (30, 6) and actions.dtype == np.float32
    assert np.isfinite(actions).all()
    # unnormalised with std 20 degrees: a visible motion, nowhere near the normalised scale or wild values
    assert 1.0 < float(np.abs(actions).max()) < 200.0
    np.testing.assert_array_equal(actions, policy.predict_chunk(observation))  # eval mode: deterministic


def test_failed_build_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(directory: Path) -> None:
        (directory / "config.json").write_text("{}")
        raise RuntimeError("disk full")

    monkeypatch.setattr(demo, "_build", broken)
    with pytest.raises(Exception, match="could not create the demo policy.*disk full"):
        ensure_demo_policy(tmp_path)
    target = demo.demo_policy_dir(tmp_path)
    assert not target.exists()
    assert list(target.parent.iterdir()) == []


def test_building_warns_that_the_policy_is_untrained(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(demo, "_build", lambda directory: (directory / "config.json").write_text("{}"))
    with caplog.at_level(logging.WARNING, logger="vla_edge.policies.demo"):
        path = ensure_demo_policy(tmp_path)
    assert (path / "config.json").is_file()
    assert any("UNTRAINED" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)


def test_importing_vla_edge_does_not_import_torch_or_lerobot() -> None:
    code = (
        "import sys, vla_edge, vla_edge.policies, vla_edge.components.inference.component, "
        "vla_edge.components.inference.__main__; "
        "bad = [m for m in ('torch', 'lerobot', 'cv2') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
