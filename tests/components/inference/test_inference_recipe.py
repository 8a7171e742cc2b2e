"""The inference recipe: defaults equal the component's, least-privilege IPC, Docker run with IPC."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from vla_edge import messages
from vla_edge.components.base import load_config
from vla_edge.components.inference.config import InferenceConfig

ROOT = Path(__file__).resolve().parents[3]
RECIPE = ROOT / "components" / "inference" / "recipe.yaml"


def recipe() -> dict[str, Any]:
    return yaml.safe_load(RECIPE.read_text())


def test_default_configuration_matches_the_component_defaults() -> None:
    defaults = dict(recipe()["ComponentConfiguration"]["DefaultConfiguration"])
    defaults.pop("accessControl")
    assert defaults == load_config(InferenceConfig, {}).model_dump(by_alias=True)
    assert load_config(InferenceConfig, recipe()["ComponentConfiguration"]["DefaultConfiguration"])


def test_ipc_grants_exactly_the_topics_it_uses() -> None:
    acl = recipe()["ComponentConfiguration"]["DefaultConfiguration"]["accessControl"]
    assert list(acl) == ["aws.greengrass.ipc.pubsub"]
    grants: dict[str, set[str]] = {}
    for policy in acl["aws.greengrass.ipc.pubsub"].values():
        for operation in policy["operations"]:
            grants.setdefault(operation, set()).update(policy["resources"])
    assert grants == {
        "aws.greengrass#SubscribeToTopic": {
            messages.TOPIC_FRAME_ALL,
            messages.TOPIC_JOINT_STATE,
            messages.TOPIC_INSTRUCTION,
            messages.TOPIC_MODEL_COMMAND,
        },
        "aws.greengrass#PublishToTopic": {
            messages.TOPIC_ACTION_CHUNK,
            messages.TOPIC_MODEL_REPORT,
            messages.TOPIC_HEALTH.format(component="inference"),
        },
    }


def test_runs_the_ecr_image_in_docker_with_the_ipc_socket() -> None:
    data = recipe()
    assert set(data["ComponentDependencies"]) == {
        "aws.greengrass.DockerApplicationManager",
        "aws.greengrass.TokenExchangeService",
        "com.vlaedge.ModelUpdater",  # owns the model store the container reads
    }
    assert data["ComponentDependencies"]["com.vlaedge.ModelUpdater"]["DependencyType"] == "SOFT"
    platforms = {}
    for manifest in data["Manifests"]:
        platform = manifest["Platform"]
        (artifact,) = manifest["Artifacts"]
        image = artifact["URI"].removeprefix("docker:")
        assert artifact["URI"].startswith("docker:") and ".dkr.ecr." in image
        assert re.search(r"@sha256:[0-9a-f]{64}$", image), f"{image}: pinned by digest, never by a moving tag"
        lifecycle = manifest["Lifecycle"]
        assert lifecycle["Setenv"]["VLA_EDGE_IMAGE"] == image, "the container started is the artifact pulled"
        run = lifecycle["run"]["Script"]
        socket = "$AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT"
        assert "docker run --rm" in run
        assert f"-v {socket}:{socket}" in run
        assert "-e SVCUID -e AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT" in run
        assert "-v {configuration:/frameDir}:{configuration:/frameDir}:ro" in run  # the camera's shared memory
        assert "-e HF_HUB_OFFLINE=1" in run and "--network none" in run
        assert run.rstrip().endswith('"$VLA_EDGE_IMAGE"')
        platforms[(platform["architecture"], platform.get("accelerator"))] = lifecycle["Setenv"]["VLA_EDGE_DOCKER_GPU"]
    # The GPU per platform: Jetson through the NVIDIA runtime, x86 GPUs through --gpus; CPU devices get none.
    assert platforms == {("aarch64", "nvidia"): "--runtime nvidia", ("amd64", "nvidia"): "--gpus all",
                         ("aarch64", None): "", ("amd64", None): ""}
    first_cpu = next(i for i, m in enumerate(data["Manifests"]) if "accelerator" not in m["Platform"])
    assert all("accelerator" in m["Platform"] for m in data["Manifests"][:first_cpu]), (
        "the nucleus takes the first manifest that matches: the GPU manifests must come before the CPU ones")
