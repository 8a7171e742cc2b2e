"""``vla-edge fleet devices``: each device's components, and its model read from the inference version's recipe."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from support.fleet import Fleet, group_arn, inference_arn

from vla_edge.fleet.cli import main
from vla_edge.fleet.components import render_inference_recipe
from vla_edge.messages import ModelRef

SEEN = datetime(2026, 3, 4, 5, 6, tzinfo=UTC)
CPU = "123456789012.dkr.ecr.us-east-1.amazonaws.com/vla-edge/inference-cpu@sha256:" + "1" * 64
TEMPLATE = """\
ComponentName: com.vlaedge.Inference
ComponentVersion: "0.1.0"
ComponentDescription: Runs a policy.
Manifests:
  - Lifecycle: {run: {Script: "docker run ACCOUNT.dkr.ecr.REGION.amazonaws.com/vla-edge/inference-cpu@sha256:ZEROS"}}
    Artifacts: [{URI: "docker:ACCOUNT.dkr.ecr.REGION.amazonaws.com/vla-edge/inference-cpu@sha256:ZEROS"}]
""".replace("ZEROS", "0" * 64)


def _installed(fleet: Fleet, device: str, components: dict[str, tuple[str, str]]) -> None:
    fleet.gg.add_response("list_installed_components", {"installedComponents": [
        {"componentName": name, "componentVersion": version, "lifecycleState": state}
        for name, (version, state) in components.items()]},
        {"coreDeviceThingName": device, "topologyFilter": "ALL"})


def _stub_fleet(fleet: Fleet) -> ModelRef:
    fleet.client("iot").create_thing_group(thingGroupName="robots")
    model = ModelRef(name="arm-act", version="1.2.0", sha256="cd" * 32)
    fleet.gg.add_response("list_core_devices", {"coreDevices": [
        {"coreDeviceThingName": "robot-02", "status": "UNHEALTHY", "lastStatusUpdateTimestamp": SEEN},
        {"coreDeviceThingName": "robot-01", "status": "HEALTHY", "lastStatusUpdateTimestamp": SEEN},
    ], "nextToken": "more"}, {"thingGroupArn": group_arn("robots")})
    fleet.gg.add_response("list_core_devices", {"coreDevices": [
        {"coreDeviceThingName": "robot-03", "status": "HEALTHY", "lastStatusUpdateTimestamp": SEEN}]},
        {"thingGroupArn": group_arn("robots"), "nextToken": "more"})
    _installed(fleet, "robot-01", {"aws.greengrass.Nucleus": ("2.14.0", "FINISHED"),
                                   "com.vlaedge.Inference": ("1.0.4", "RUNNING"),
                                   "com.vlaedge.ModelUpdater": ("0.1.1", "RUNNING")})
    fleet.gg.add_response("get_component", {"recipeOutputFormat": "YAML", "recipe": render_inference_recipe(
        TEMPLATE, "1.0.4", {"cpu": CPU}, model).encode()},
        {"arn": inference_arn("1.0.4"), "recipeOutputFormat": "YAML"})
    _installed(fleet, "robot-02", {"com.vlaedge.Inference": ("1.0.4", "BROKEN"),
                                   "com.vlaedge.ModelUpdater": ("0.1.1", "RUNNING")})
    _installed(fleet, "robot-03", {"com.vlaedge.Camera": ("0.1.2", "RUNNING")})
    return model


def test_the_table_shows_each_devices_versions_and_model_reading_each_recipe_once(fleet: Fleet) -> None:
    _stub_fleet(fleet)
    runtime = fleet.runtime()

    assert main(["devices", "--thing-group", "robots"], runtime) == 0, runtime.stderr.getvalue()

    assert runtime.stdout.getvalue().splitlines() == [
        "DEVICE    STATUS     LAST UPDATE (UTC)  INFERENCE       MODEL                                OTHER COMPONENTS",
        "robot-01  HEALTHY    2026-03-04 05:06   1.0.4           arm-act 1.2.0 (sha256 cdcdcdcdcdcd)  ModelUpdater 0.1.1",
        "robot-02  UNHEALTHY  2026-03-04 05:06   1.0.4 (BROKEN)  arm-act 1.2.0 (sha256 cdcdcdcdcdcd)  ModelUpdater 0.1.1",
        "robot-03  HEALTHY    2026-03-04 05:06   -               -                                    Camera 0.1.2",
    ]
    fleet.gg.assert_no_pending_responses()


def test_json_lists_every_device(fleet: Fleet) -> None:
    model = _stub_fleet(fleet)
    runtime = fleet.runtime()

    assert main(["devices", "--thing-group", "robots", "--json"], runtime) == 0

    devices = json.loads(runtime.stdout.getvalue())
    assert [d["device"] for d in devices] == ["robot-01", "robot-02", "robot-03"]
    assert devices[0] == {
        "device": "robot-01", "status": "HEALTHY", "lastStatusUpdate": SEEN.isoformat(),
        "components": {"com.vlaedge.Inference": "1.0.4", "com.vlaedge.ModelUpdater": "0.1.1"},
        "lifecycleStates": {"com.vlaedge.Inference": "RUNNING", "com.vlaedge.ModelUpdater": "RUNNING"},
        "model": {"name": model.name, "version": model.version, "sha256": model.sha256},
    }
    assert devices[2]["model"] is None
