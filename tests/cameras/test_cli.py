from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from vla_edge.cameras.ring import FrameRing
from vla_edge.cli import main


def test_camera_list_runs_without_cameras(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["camera", "list"]) == 0
    assert capsys.readouterr().out.strip()


def test_snap_grabs_from_the_configured_source(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "camera.yaml"
    config.write_text(f"cameras:\n  - name: top\n    width: 80\n    height: 60\nframeDir: {tmp_path / 'none'}\n")
    out = tmp_path / "top.png"
    assert main(["camera", "snap", "top", "--config", str(config), "-o", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    assert cv2.imread(str(out)).shape == (60, 80, 3)


def test_snap_prefers_the_running_components_ring(tmp_path: Path) -> None:
    frames = tmp_path / "frames"
    image = np.random.default_rng(3).integers(0, 256, (60, 80, 3), dtype=np.uint8)
    config = tmp_path / "camera.yaml"
    config.write_text(f"cameras:\n  - name: top\n    width: 80\n    height: 60\nframeDir: {frames}\n")
    with FrameRing.create(frames, "top", 60, 80) as ring:
        ring.write(image, 1.0)
        out = tmp_path / "snap.png"
        assert main(["camera", "snap", "top", "--config", str(config), "-o", str(out)]) == 0
    np.testing.assert_array_equal(cv2.cvtColor(cv2.imread(str(out)), cv2.COLOR_BGR2RGB), image)


def test_snap_of_an_unknown_camera_names_the_configured_ones(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    config = tmp_path / "camera.yaml"
    config.write_text("cameras:\n  - name: top\n")
    assert main(["camera", "snap", "wrist", "--config", str(config)]) == 2
    assert "top" in caplog.text
