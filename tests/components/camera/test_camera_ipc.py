"""The camera component over the real IPC protocol: deployment validation, live updates, access control."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import wait_for
from support.ipc import PUBLISH, SUBSCRIBE, short_run_dir, write_recipe

from vla_edge import messages
from vla_edge.bus.ipc import GreengrassIpcBus
from vla_edge.components.base import load_config
from vla_edge.components.camera.component import CameraComponent
from vla_edge.components.camera.config import CameraComponentConfig
from vla_edge.core.server import LocalCore

ROOT = Path(__file__).resolve().parents[3]
CAMERA = "com.vlaedge.Camera"
OPERATOR = "com.test.Operator"


def connect(core: LocalCore, component: str) -> GreengrassIpcBus:
    return GreengrassIpcBus.connect(environment=core.environment(component))


@pytest.fixture
def camera_core(tmp_path: Path) -> Iterator[Any]:
    """A local core with the real camera recipe (debug snapshots granted only when asked) and an operator."""
    operator = write_recipe(
        tmp_path, OPERATOR, pubsub=[([PUBLISH], [messages.TOPIC_SNAPSHOT_REQUEST]), ([SUBSCRIBE], ["vla-edge/#"])]
    )
    stack = contextlib.ExitStack()

    def start(grant_snapshots: bool = False) -> tuple[LocalCore, CameraComponent, threading.Event]:
        overrides: dict[str, Any] = {CAMERA: {"frameDir": str(tmp_path / "frames"),
                                              "cameras": [{"name": "front", "width": 64, "height": 48, "fps": 60}]}}
        if grant_snapshots:
            overrides[CAMERA]["accessControl"] = {"aws.greengrass.ipc.pubsub": {"com.vlaedge.Camera:debug:1": {
                "policyDescription": "debug snapshots", "operations": [SUBSCRIBE, PUBLISH],
                "resources": [messages.TOPIC_SNAPSHOT_REQUEST, messages.TOPIC_SNAPSHOT_ALL]}}}
        run_dir = stack.enter_context(short_run_dir())
        core = stack.enter_context(LocalCore(run_dir, [ROOT / "components/camera/recipe.yaml", operator], overrides))
        bus = stack.enter_context(connect(core, CAMERA))
        component = CameraComponent(bus, load_config(CameraComponentConfig, bus.get_configuration()))
        stack.callback(component.close)
        stop = threading.Event()
        thread = threading.Thread(target=component.run, args=(stop,))
        thread.start()
        stack.callback(thread.join, 10)
        stack.callback(stop.set)
        return core, component, stop

    with stack:
        yield start


def test_deployment_with_bad_configuration_is_rejected_with_the_reason(camera_core: Any) -> None:
    core, component, _ = camera_core()
    wait_for(lambda: core.component_states().get(CAMERA) == "RUNNING")
    current = core.configuration(CAMERA)
    report = core.propose_configuration(CAMERA, {**current, "cameras": [{"name": "front", "fps": 0}]})
    assert report is not None and report.status == "REJECTED"
    assert "fps" in (report.message or "")
    report = core.propose_configuration(CAMERA, {**current, "cameras": [{"name": "x", "source": "webcam"}]})
    assert report is not None and report.status == "REJECTED" and "source" in (report.message or "")
    report = core.propose_configuration(CAMERA, current)
    assert report is not None and report.status == "ACCEPTED"


def test_accepted_deployment_changes_the_frame_size_live(camera_core: Any) -> None:
    core, component, _ = camera_core()
    ready: list[messages.FrameReady] = []
    watcher = connect(core, OPERATOR)
    try:
        watcher.subscribe(messages.TOPIC_FRAME_ALL, lambda t, p: ready.append(messages.decode(t, p)))
        wait_for(lambda: ready and ready[-1].width == 64)
        current = core.configuration(CAMERA)
        bigger = {**current, "cameras": [{"name": "front", "width": 96, "height": 72, "fps": 60}]}
        report = core.propose_configuration(CAMERA, bigger, apply=True)
        assert report is not None and report.status == "ACCEPTED"
        wait_for(lambda: ready[-1].width == 96 and ready[-1].height == 72, timeout=20)
        assert component.counters.get("config_applied") == 1
        assert core.component_states()[CAMERA] == "RUNNING"
    finally:
        watcher.close()


def test_snapshots_are_off_unless_the_recipe_grants_them(camera_core: Any) -> None:
    _, component, _ = camera_core()
    assert component.snapshots_enabled is False


def test_granted_snapshot_travels_as_jpeg_over_ipc(camera_core: Any) -> None:
    core, component, _ = camera_core(grant_snapshots=True)
    assert component.snapshots_enabled is True
    wait_for(lambda: component.workers()["front"].latest() is not None)
    operator = connect(core, OPERATOR)
    snapshots: list[messages.Message] = []
    try:
        operator.subscribe(messages.TOPIC_SNAPSHOT_ALL, lambda t, p: snapshots.append(messages.decode(t, p)))
        operator.publish(*messages.encode(messages.SnapshotRequest(camera="front", request_id="ipc")))
        snapshot = wait_for(lambda: snapshots and snapshots[0])
    finally:
        operator.close()
    assert isinstance(snapshot, messages.Frame)
    assert snapshot.encoding == "jpeg" and snapshot.request_id == "ipc" and snapshot.pixels[:2] == b"\xff\xd8"
