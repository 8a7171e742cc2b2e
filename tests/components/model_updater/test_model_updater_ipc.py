"""The model-updater over the real IPC protocol (local core, awsiotsdk): status, IoT Core, a deferred update."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import wait_for
from support.ipc import PUBLISH, SUBSCRIBE, short_run_dir, write_recipe
from support.updater import JOINTS

from vla_edge import messages
from vla_edge.bus.ipc import GreengrassIpcBus
from vla_edge.components.base import load_config
from vla_edge.components.model_updater.component import ModelUpdaterComponent
from vla_edge.components.model_updater.config import ModelUpdaterConfig
from vla_edge.core.server import LocalCore

from .conftest import Published

ROOT = Path(__file__).resolve().parents[3]
UPDATER = "com.vlaedge.ModelUpdater"
ARM = "com.test.Arm"
THING = "arm-station-3"


class Arm:
    """Publishes JointState at 20 Hz over IPC, executing or holding as the test says."""

    def __init__(self, bus: GreengrassIpcBus) -> None:
        self.bus = bus
        self.holding = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            state = messages.JointState(t=time.time(), names=list(JOINTS), positions=[0.0] * len(JOINTS),
                                        holding=self.holding, chunk_id=None if self.holding else "c-1")
            self.bus.publish(*messages.encode(state))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


@pytest.fixture
def running(tmp_path: Path, store_dir: Path, v1: Published,
            monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[LocalCore, ModelUpdaterComponent, GreengrassIpcBus]]:
    arm_recipe = write_recipe(tmp_path, ARM, pubsub=[([PUBLISH], [messages.TOPIC_JOINT_STATE]),
                                                     ([SUBSCRIBE], [messages.TOPIC_MODEL_STATUS])])
    overrides: dict[str, Any] = {UPDATER: {"storeDir": str(store_dir), "deferRecheckS": 0.05, "reportPeriodS": 0.5}}
    with short_run_dir() as run_dir, LocalCore(run_dir, [ROOT / "components/model-updater/recipe.yaml", arm_recipe],
                                               overrides, thing_name=THING) as core:
        environment = core.environment(UPDATER)
        monkeypatch.setenv("AWS_IOT_THING_NAME", environment["AWS_IOT_THING_NAME"])
        bus = GreengrassIpcBus.connect(environment=environment)
        arm_bus = GreengrassIpcBus.connect(environment=core.environment(ARM))
        component = ModelUpdaterComponent(bus, load_config(ModelUpdaterConfig, bus.get_configuration()))
        stop = threading.Event()
        thread = threading.Thread(target=component.run, args=(stop,), daemon=True)
        thread.start()
        try:
            yield core, component, arm_bus
        finally:
            stop.set()
            thread.join(15)
            component.close()
            bus.close()
            arm_bus.close()


def test_status_iot_core_and_a_deferred_update_over_ipc(running: tuple[LocalCore, ModelUpdaterComponent,
                                                                       GreengrassIpcBus], v1: Published) -> None:
    core, component, arm_bus = running
    statuses: list[messages.ModelStatus] = []
    arm_bus.subscribe(messages.TOPIC_MODEL_STATUS, lambda t, p: statuses.append(messages.decode(t, p)))  # type: ignore[arg-type]
    wait_for(lambda: core.component_states().get(UPDATER) == "RUNNING")

    # the status reaches IoT Core on the thing's topic (the one sent at start) ...
    sent = wait_for(lambda: [m for m in core.iot_core_messages() if m.topic == f"vla-edge/{THING}/model/status"])
    body = sent[0].json()  # type: ignore[index]
    assert (body["state"], body["model"]["sha256"], sent[0].component) == ("active", v1.ref.sha256, UPDATER)  # type: ignore[index]
    # ... and the local bus, repeated every reportPeriodS for a subscriber that came later
    wait_for(lambda: any(s.state == "active" and s.model == v1.ref for s in statuses))
    assert statuses[0].path is not None and statuses[0].path.endswith("/1-" + v1.ref.sha256[:12])

    # a deployment's update step waits while the arm executes, and goes ahead once it holds
    arm = Arm(arm_bus)
    try:
        wait_for(lambda: component.arm.executing())
        outcome: list[Any] = []
        update = threading.Thread(target=lambda: outcome.append(
            core.update_components("model-v2", timeout_s=30, recheck_min_s=0)))
        update.start()
        wait_for(lambda: component.counters.get("updates.deferred") >= 1)
        arm.holding = True
        update.join(30)
    finally:
        arm.stop()
    (result,) = outcome
    assert result.reason == "not_deferred" and result.rounds >= 2
    first, last = result.responses[0], result.responses[-1]
    assert (first.component, first.recheck_after_ms) == (UPDATER, 50) and "executing" in (first.message or "")
    assert last.recheck_after_ms == 0
    wait_for(lambda: component.counters.get("updates.allowed") == 1)
    assert core.component_states()[UPDATER] == "RUNNING"
