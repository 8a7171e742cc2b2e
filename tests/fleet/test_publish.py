"""``vla-edge model publish``: a model directory to a thing group in one command.

ECR, IoT and S3 are moto; greengrassv2 is stubbed; docker is faked at its binary (a push
puts the image into moto's ECR), or absent for real (a docker path that does not exist).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import yaml
from botocore.stub import ANY
from support.fleet import (
    ACCOUNT,
    REGION,
    REPO_ROOT,
    FakeDocker,
    Fleet,
    group_arn,
    inference_arn,
    stub_recipe,
)

from vla_edge.fleet.cli import main as fleet_main
from vla_edge.fleet.components import model_of_recipe
from vla_edge.fleet.publish import GREENGRASS_ARCHITECTURES, image_platform
from vla_edge.updater.cli import main
from vla_edge.updater.manifest import read_manifest

NOW = datetime(2026, 1, 1, tzinfo=UTC)
REPOSITORY_URI = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/vla-edge/inference-cpu"
RUNNING = {
    "com.vlaedge.Camera": {"componentVersion": "0.1.2"},
    "com.vlaedge.ModelUpdater": {"componentVersion": "0.1.1"},
    "com.vlaedge.Inference": {"componentVersion": "1.0.3"},
}
ROLLOUT = {
    "jobExecutionsRolloutConfig": {"exponentialRate": {
        "baseRatePerMinute": 5, "incrementFactor": 2.0, "rateIncreaseCriteria": {"numberOfSucceededThings": 5}}},
    "abortConfig": {"criteriaList": [{"failureType": "ALL", "action": "CANCEL", "thresholdPercentage": 10.0,
                                      "minNumberOfExecutedThings": 5}]},
    "timeoutConfig": {"inProgressTimeoutInMinutes": 60},
}


def _argv(model: Path, *extra: str) -> list[str]:
    context = model.parents[1]
    return ["publish", str(model), "--thing-group", "robots", "--context", str(context),
            "--dockerfile", str(REPO_ROOT / "docker/inference/Dockerfile.cpu"),
            "--recipe", str(REPO_ROOT / "components/inference/recipe.yaml"), *extra]


def _latest(fleet: Fleet, components: dict) -> None:
    target = group_arn("robots")
    fleet.gg.add_response("list_deployments", {"deployments": [{"deploymentId": "d-old"}]},
                          {"targetArn": target, "historyFilter": "LATEST_ONLY"})
    fleet.gg.add_response("get_deployment", {"deploymentId": "d-old", "targetArn": target,
                                             "deploymentStatus": "ACTIVE", "components": components},
                          {"deploymentId": "d-old"})


def test_publish_builds_pushes_publishes_the_pinned_recipe_and_deploys_it(fleet: Fleet, docker: FakeDocker,
                                                                          tiny_model: Path) -> None:
    fleet.client("iot").create_thing_group(thingGroupName="robots")
    fleet.gg.add_response("list_component_versions", {"componentVersions": [{"componentVersion": "1.0.3"}]},
                          {"arn": inference_arn()})
    fleet.gg.add_response("create_component_version", {
        "arn": inference_arn("1.0.4"), "componentName": "com.vlaedge.Inference", "componentVersion": "1.0.4",
        "creationTimestamp": NOW, "status": {"componentState": "REQUESTED"}}, {"inlineRecipe": ANY})
    fleet.gg.add_response("describe_component", {"status": {"componentState": "DEPLOYABLE"}},
                          {"arn": inference_arn("1.0.4")})
    _latest(fleet, RUNNING)
    stub_recipe(fleet.gg, "com.vlaedge.Camera", "0.1.2")
    stub_recipe(fleet.gg, "com.vlaedge.ModelUpdater", "0.1.1")
    fleet.gg.add_response("create_deployment", {"deploymentId": "d-new", "iotJobId": "job-new"}, {
        "targetArn": group_arn("robots"),
        "deploymentName": "vla-edge robots: com.vlaedge.Inference=1.0.4",
        "components": {**RUNNING, "com.vlaedge.Inference": {"componentVersion": "1.0.4"}},
        "iotJobConfiguration": ROLLOUT,
        "deploymentPolicies": {
            "failureHandlingPolicy": "ROLLBACK",
            "componentUpdatePolicy": {"action": "NOTIFY_COMPONENTS", "timeoutInSeconds": 120},
            "configurationValidationPolicy": {"timeoutInSeconds": 30}},
    })
    runtime = fleet.runtime(docker_runner=docker)

    code = main(_argv(tiny_model, "--no-watch"), runtime)

    assert code == 0, runtime.stderr.getvalue()
    manifest = read_manifest(tiny_model)  # written beside the model, so the image carries it
    tag = f"{REPOSITORY_URI}:arm-act-1.2.0"
    assert docker.names() == ["docker info", "docker buildx", "docker login", "docker tag", "docker push"]
    assert docker.commands[1] == [
        "docker", "buildx", "build", "--file", str(REPO_ROOT / "docker/inference/Dockerfile.cpu"),
        "--build-arg", "MODEL_SOURCE=models/arm-act", "--platform", image_platform("cpu", None),
        "--tag", "vla-edge-inference-cpu:arm-act-1.2.0", "--load", str(tiny_model.parents[1])]
    assert docker.commands[3:] == [["docker", "tag", "vla-edge-inference-cpu:arm-act-1.2.0", tag], ["docker", "push", tag]]
    pinned = f"{REPOSITORY_URI}@{docker.pushed[tag]}"

    [sent] = fleet.sent("CreateComponentVersion")
    recipe_text = sent["inlineRecipe"].decode()
    recipe = yaml.safe_load(recipe_text)
    assert recipe["ComponentName"] == "com.vlaedge.Inference" and recipe["ComponentVersion"] == "1.0.4"
    built_for = GREENGRASS_ARCHITECTURES[image_platform("cpu", None)]
    assert [(m["Platform"]["architecture"], "accelerator" in m["Platform"]) for m in recipe["Manifests"]] == [
        (built_for, False)], "only the CPU manifest of the architecture the image was built for takes it"
    for platform_manifest in recipe["Manifests"]:
        assert [a["URI"] for a in platform_manifest["Artifacts"]] == [f"docker:{pinned}"]
        assert pinned in json.dumps(platform_manifest["Lifecycle"])  # what docker run starts is what is pulled
    assert "0" * 64 not in recipe_text
    found = model_of_recipe(recipe_text)
    assert (found.name, found.version, found.sha256) == ("arm-act", "1.2.0", manifest.sha256)

    out = runtime.stdout.getvalue()
    assert f"com.vlaedge.Inference 1.0.4: {pinned} with arm-act 1.2.0 (sha256 {manifest.sha256[:12]})" in out
    assert "deployment d-new created for robots\nfollow it with: vla-edge fleet watch d-new\n" in out
    fleet.gg.assert_no_pending_responses()


def test_without_a_docker_engine_the_commands_and_the_next_steps_are_printed(fleet: Fleet, tiny_model: Path) -> None:
    runtime = fleet.runtime()
    missing = str(tiny_model.parent / "no-docker")

    code = main(_argv(tiny_model, "--docker", missing), runtime)

    assert code == 3, runtime.stderr.getvalue()
    registry = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com"
    tag = f"{REPOSITORY_URI}:arm-act-1.2.0"
    assert runtime.stdout.getvalue().splitlines() == [
        "no Docker engine answers here; run these commands where one does:",
        (f"  {missing} buildx build --file {REPO_ROOT}/docker/inference/Dockerfile.cpu --build-arg "
        f"MODEL_SOURCE=models/arm-act --platform {image_platform('cpu', None)} --tag vla-edge-inference-cpu:arm-act-1.2.0 "
        f"--load {tiny_model.parents[1]}"),
        f"  aws ecr get-login-password --region {REGION} | {missing} login --username AWS --password-stdin {registry}",
        f"  {missing} tag vla-edge-inference-cpu:arm-act-1.2.0 {tag}",
        f"  {missing} push {tag}",
        "then:",
        f"  vla-edge fleet publish --image cpu={tag} --model-dir {tiny_model} --component-version NEXT_PATCH",
        ("  vla-edge fleet deploy --thing-group robots --component com.vlaedge.Inference=VERSION "
        "(the version the publish step printed)"),
    ]
    assert fleet.client("ecr").describe_images(repositoryName="vla-edge/inference-cpu")["imageDetails"] == []
    fleet.gg.assert_no_pending_responses()


def test_a_model_outside_the_build_context_is_refused_before_anything_runs(fleet: Fleet, docker: FakeDocker,
                                                                           tiny_model: Path, tmp_path: Path) -> None:
    runtime = fleet.runtime(docker_runner=docker)
    argv = _argv(tiny_model)
    argv[argv.index("--context") + 1] = str(tmp_path / "elsewhere")

    assert main(argv, runtime) == 1
    assert "is outside the docker build context" in runtime.stderr.getvalue()
    assert docker.names() == []


def test_model_only_uploads_to_s3_and_points_the_updater_at_it_without_notifying(fleet: Fleet, tiny_model: Path) -> None:
    s3 = fleet.client("s3")
    s3.create_bucket(Bucket="fleet-models")
    fleet.client("iot").create_thing_group(thingGroupName="robots")
    updater_before = {"keepPrevious": 3, "model": {"source": "image"}}
    _latest(fleet, {**RUNNING, "com.vlaedge.ModelUpdater": {
        "componentVersion": "0.1.1", "configurationUpdate": {"merge": json.dumps(updater_before)}}})
    stub_recipe(fleet.gg, "com.vlaedge.Camera", "0.1.2")
    stub_recipe(fleet.gg, "com.vlaedge.Inference", "1.0.3", {"com.vlaedge.ModelUpdater": ">=0.1.0 <0.2.0"})
    desired = {"keepPrevious": 3,  # the group's earlier merge stays, for devices that join later
               "model": {"bucket": "fleet-models", "prefix": "models/arm-act/1.2.0", "region": REGION, "source": "s3"}}
    fleet.gg.add_response("create_deployment", {"deploymentId": "d-model", "iotJobId": "job-model"}, {
        "targetArn": group_arn("robots"),
        "deploymentName": "vla-edge robots: model arm-act 1.2.0",
        "components": {**RUNNING, "com.vlaedge.ModelUpdater": {
            "componentVersion": "0.1.1", "configurationUpdate": {"merge": json.dumps(desired, sort_keys=True)}}},
        "iotJobConfiguration": ROLLOUT,
        "deploymentPolicies": {
            "failureHandlingPolicy": "ROLLBACK",
            "componentUpdatePolicy": {"action": "SKIP_NOTIFY_COMPONENTS", "timeoutInSeconds": 120},
            "configurationValidationPolicy": {"timeoutInSeconds": 30}},
    })
    runtime = fleet.runtime()

    code = main(["publish", str(tiny_model), "--thing-group", "robots", "--model-only", "--bucket", "fleet-models",
                 "--no-watch"], runtime)

    assert code == 0, runtime.stderr.getvalue()
    manifest = read_manifest(tiny_model)
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket="fleet-models")["Contents"])
    assert keys == sorted([f"models/arm-act/1.2.0/{f}" for f in manifest.files] +
                          ["models/arm-act/1.2.0/vla_edge_manifest.json"])
    assert [p["Key"] for p in fleet.sent("PutObject")][-1].endswith("vla_edge_manifest.json")  # the manifest last
    stored = s3.get_object(Bucket="fleet-models", Key="models/arm-act/1.2.0/vla_edge_manifest.json")["Body"].read()
    assert json.loads(stored)["sha256"] == manifest.sha256
    assert "model arm-act 1.2.0" in runtime.stdout.getvalue() and "s3://fleet-models/models/arm-act/1.2.0" in \
        runtime.stdout.getvalue()
    fleet.gg.assert_no_pending_responses()


def test_model_only_needs_the_updater_deployed_and_a_bucket(fleet: Fleet, tiny_model: Path) -> None:
    runtime = fleet.runtime()
    assert main(["publish", str(tiny_model), "--thing-group", "robots", "--model-only"], runtime) == 2
    assert "--model-only needs --bucket" in runtime.stderr.getvalue()

    fleet.client("iot").create_thing_group(thingGroupName="robots")
    fleet.client("s3").create_bucket(Bucket="fleet-models")
    _latest(fleet, {"com.vlaedge.Inference": {"componentVersion": "1.0.3"}})
    runtime = fleet.runtime()
    assert main(["publish", str(tiny_model), "--thing-group", "robots", "--model-only", "--bucket", "fleet-models"],
                runtime) == 1
    assert "com.vlaedge.ModelUpdater is not a component of robots's deployment" in runtime.stderr.getvalue()


def test_publish_then_watch_prints_one_json_document_and_exits_0_when_every_robot_succeeded(
        fleet: Fleet, docker: FakeDocker, tiny_model: Path) -> None:
    iot = fleet.stub("iot")  # the IoT job's counts: moto's jobs do not progress
    target = group_arn("robots")
    iot.add_response("describe_thing_group", {"thingGroupArn": target}, {"thingGroupName": "robots"})
    fleet.gg.add_client_error("list_component_versions", "ResourceNotFoundException", "none yet", 404)
    fleet.gg.add_response("create_component_version", {
        "arn": inference_arn("0.1.0"), "componentName": "com.vlaedge.Inference", "componentVersion": "0.1.0",
        "creationTimestamp": NOW, "status": {"componentState": "DEPLOYABLE"}}, {"inlineRecipe": ANY})
    fleet.gg.add_response("list_deployments", {"deployments": []}, {"targetArn": target, "historyFilter": "LATEST_ONLY"})
    fleet.gg.add_response("create_deployment", {"deploymentId": "d-1", "iotJobId": "job-1"}, {
        "targetArn": target, "deploymentName": ANY, "components": {"com.vlaedge.Inference": {"componentVersion": "0.1.0"}},
        "iotJobConfiguration": ANY, "deploymentPolicies": ANY})
    fleet.gg.add_response("get_deployment", {"deploymentId": "d-1", "targetArn": target, "iotJobId": "job-1",
                                             "deploymentStatus": "ACTIVE"}, {"deploymentId": "d-1"})
    fleet.gg.add_response("list_core_devices", {"coreDevices": [{"coreDeviceThingName": "robot-01"}]},
                          {"thingGroupArn": target})
    iot.add_response("describe_job", {"job": {"status": "IN_PROGRESS", "jobProcessDetails": {
        "numberOfSucceededThings": 1}}}, {"jobId": "job-1"})
    fleet.gg.add_response("list_effective_deployments", {"effectiveDeployments": [{
        "deploymentId": "d-1", "deploymentName": "x", "targetArn": target, "coreDeviceExecutionStatus": "SUCCEEDED",
        "creationTimestamp": NOW, "modifiedTimestamp": NOW}]}, {"coreDeviceThingName": "robot-01"})
    runtime = fleet.runtime(docker_runner=docker, sleep=lambda s: None)

    code = main(_argv(tiny_model, "--json"), runtime)

    assert code == 0, runtime.stderr.getvalue()
    summary = json.loads(runtime.stdout.getvalue())
    assert summary["component"]["version"] == "0.1.0" and summary["deploymentId"] == "d-1"
    assert summary["images"]["cpu"]["digest"] == docker.pushed[f"{REPOSITORY_URI}:arm-act-1.2.0"]
    assert summary["watch"]["ok"] is True
    assert summary["watch"]["devices"] == [{"device": "robot-01", "status": "SUCCEEDED", "reason": ""}]
    assert "deployment d-1 succeeded: every device finished" in runtime.stderr.getvalue()
    fleet.gg.assert_no_pending_responses()
    iot.assert_no_pending_responses()


def test_push_image_prints_the_pinned_reference(fleet: Fleet, docker: FakeDocker) -> None:
    runtime = fleet.runtime(docker_runner=docker)

    code = fleet_main(["push-image", "vla-edge-inference-cuda:arm-act-1.2.0", "--variant", "cuda"], runtime)

    assert code == 0, runtime.stderr.getvalue()
    tag = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/vla-edge/inference-cuda:arm-act-1.2.0"
    assert runtime.stdout.getvalue() == f"{tag.rsplit(':', 1)[0]}@{docker.pushed[tag]}\n"


def test_one_version_for_a_mixed_group_carries_an_image_per_variant(fleet: Fleet, docker: FakeDocker,
                                                                     tiny_model: Path) -> None:
    context = tiny_model.parents[1]
    for variant in ("cpu", "jetson"):  # the default Dockerfiles: docker/inference/Dockerfile.VARIANT of the context
        (context / "docker/inference").mkdir(parents=True, exist_ok=True)
        (context / f"docker/inference/Dockerfile.{variant}").write_text("FROM scratch\n")
    fleet.client("iot").create_thing_group(thingGroupName="robots")
    fleet.gg.add_response("list_component_versions", {"componentVersions": [{"componentVersion": "0.1.3"}]},
                          {"arn": inference_arn()})
    fleet.gg.add_response("create_component_version", {
        "arn": inference_arn("0.1.4"), "componentName": "com.vlaedge.Inference", "componentVersion": "0.1.4",
        "creationTimestamp": NOW, "status": {"componentState": "DEPLOYABLE"}}, {"inlineRecipe": ANY})
    fleet.gg.add_response("list_deployments", {"deployments": []},
                          {"targetArn": group_arn("robots"), "historyFilter": "LATEST_ONLY"})
    fleet.gg.add_response("create_deployment", {"deploymentId": "d-2"}, {
        "targetArn": group_arn("robots"), "deploymentName": ANY, "iotJobConfiguration": ANY,
        "deploymentPolicies": ANY, "components": {"com.vlaedge.Inference": {"componentVersion": "0.1.4"}}})
    runtime = fleet.runtime(docker_runner=docker)

    code = main(["publish", str(tiny_model), "--thing-group", "robots", "--context", str(tiny_model.parents[1]),
                 "--recipe", str(REPO_ROOT / "components/inference/recipe.yaml"), "--variant", "cpu",
                 "--variant", "jetson", "--no-watch"], runtime)

    assert code == 0, runtime.stderr.getvalue()
    builds = [c for c in docker.commands if c[1] == "buildx"]
    assert [(c[c.index("--file") + 1], c[c.index("--platform") + 1]) for c in builds] == [
        (f"{context}/docker/inference/Dockerfile.cpu", image_platform("cpu", None)),
        (f"{context}/docker/inference/Dockerfile.jetson", "linux/arm64")]
    recipe = yaml.safe_load(fleet.sent("CreateComponentVersion")[0]["inlineRecipe"])
    uris = [m["Artifacts"][0]["URI"] for m in recipe["Manifests"]]
    jetson = f"docker:{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/vla-edge/inference-jetson@"
    cpu = f"docker:{REPOSITORY_URI}@"
    assert uris[0].startswith(jetson) and all(u.startswith(cpu) for u in uris[1:]) and len(uris) >= 2
    assert not any("inference-cuda" in u for u in uris)  # no CUDA image: its manifest is left out
    fleet.gg.assert_no_pending_responses()
