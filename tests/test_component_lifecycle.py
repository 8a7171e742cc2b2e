"""A real component process under the supervisor, against the local core, with the nucleus's restart rules."""

from __future__ import annotations

import sys
from pathlib import Path

from support import wait_for
from support.ipc import short_run_dir

from vla_edge.core.server import LocalCore
from vla_edge.supervisor import ProcessSpec, Supervisor

ROOT = Path(__file__).resolve().parents[1]
CAMERA = "com.vlaedge.Camera"


def test_component_with_bad_configuration_reports_errored_is_restarted_then_broken(tmp_path: Path) -> None:
    overrides = {CAMERA: {"cameras": [{"name": "front", "fps": 0}]}}
    log = tmp_path / "camera.log"
    with short_run_dir() as run_dir, LocalCore(run_dir, [ROOT / "components/camera/recipe.yaml"], overrides) as core:
        spec = ProcessSpec("camera", [sys.executable, "-m", "vla_edge.components.camera"], core.environment(CAMERA), log)
        supervisor = Supervisor([spec], restart_delay_s=0.05)
        supervisor.start()
        try:
            wait_for(lambda: supervisor.statuses()["camera"].state == "BROKEN", timeout=90)
        finally:
            final = supervisor.stop()
        assert final["camera"].exit_codes == [2, 2, 2]
        assert final["camera"].restarts == 2
        assert core.component_states()[CAMERA] == "ERRORED"
    text = log.read_text()
    assert text.count("invalid CameraComponentConfig") == 3
    assert "cameras.0.fps" in text and "deploy again" in text


def test_component_runs_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    log = tmp_path / "camera.log"
    overrides = {CAMERA: {"frameDir": str(tmp_path / "frames")}}  # never the real /dev/shm/vla-edge
    with short_run_dir() as run_dir, LocalCore(run_dir, [ROOT / "components/camera/recipe.yaml"], overrides) as core:
        spec = ProcessSpec("camera", [sys.executable, "-m", "vla_edge.components.camera"], core.environment(CAMERA), log)
        supervisor = Supervisor([spec])
        supervisor.start()
        try:
            wait_for(lambda: core.component_states().get(CAMERA) == "RUNNING", timeout=60)
        finally:
            final = supervisor.stop()
    assert final["camera"].state == "STOPPED" and final["camera"].exit_codes == []
    assert "stopped cleanly" in log.read_text()
    assert list((tmp_path / "frames").iterdir()) == [], "the camera removes its rings on a clean stop"
