"""ECR against moto: the repository, the push (docker faked at its binary), the digest read back."""

from __future__ import annotations

import base64
import io

import pytest
from support.fleet import ACCOUNT, REGION, FakeDocker, Fleet

from vla_edge.fleet.aws import Aws
from vla_edge.fleet.docker import DockerCli, build_command
from vla_edge.fleet.ecr import (
    ensure_repository,
    image_digest,
    push_image,
    resolve_pinned,
)
from vla_edge.fleet.errors import FleetError, NotFound

REGISTRY = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com"


def _aws(fleet: Fleet) -> Aws:
    return Aws(clients=fleet.clients, out=io.StringIO())


def test_a_missing_repository_is_created_with_scan_on_push_and_the_asked_tag_mutability(fleet: Fleet) -> None:
    repo = ensure_repository(_aws(fleet), "vla-edge/inference-cpu", scan_on_push=True, immutable_tags=True)

    assert repo.uri == f"{REGISTRY}/vla-edge/inference-cpu" and repo.immutable_tags
    stored = fleet.client("ecr").describe_repositories(repositoryNames=["vla-edge/inference-cpu"])["repositories"][0]
    assert stored["imageScanningConfiguration"] == {"scanOnPush": True}
    assert stored["imageTagMutability"] == "IMMUTABLE"


def test_an_existing_repository_is_used_as_it_is(fleet: Fleet) -> None:
    fleet.client("ecr").create_repository(repositoryName="team/inference", imageTagMutability="MUTABLE")

    repo = ensure_repository(_aws(fleet), "team/inference", immutable_tags=True)

    assert not repo.immutable_tags
    assert len(fleet.client("ecr").describe_repositories()["repositories"]) == 1


def test_push_logs_in_with_the_ecr_token_tags_pushes_and_reads_the_digest_back(fleet: Fleet, docker: FakeDocker) -> None:
    aws = _aws(fleet)
    repo = ensure_repository(aws, "vla-edge/inference-cpu")
    cli = DockerCli(runner=docker)

    image = push_image(aws, cli, "vla-edge-inference:arm-act-1.2.0", repo, "arm-act-1.2.0")

    target = f"{REGISTRY}/vla-edge/inference-cpu:arm-act-1.2.0"
    assert docker.commands[1:] == [
        ["docker", "login", "--username", "AWS", "--password-stdin", REGISTRY],
        ["docker", "tag", "vla-edge-inference:arm-act-1.2.0", target],
        ["docker", "push", target],
    ]
    token = fleet.client("ecr").get_authorization_token()["authorizationData"][0]["authorizationToken"]
    assert docker.stdin[1] == base64.b64decode(token).decode().split(":", 1)[1]  # the password, on stdin only
    assert image.digest == docker.pushed[target]
    assert image.pinned == f"{REGISTRY}/vla-edge/inference-cpu@{docker.pushed[target]}"
    assert resolve_pinned(aws, target) == image.pinned


def test_without_a_docker_engine_the_exact_commands_are_printed_and_nothing_is_pushed(fleet: Fleet, tmp_path) -> None:
    aws = _aws(fleet)
    repo = ensure_repository(aws, "vla-edge/inference-cpu")
    out = io.StringIO()
    cli = DockerCli(binary=str(tmp_path / "no-such-docker"), out=out)

    image = push_image(aws, cli, "vla-edge-inference:v1", repo, "v1")

    docker_bin = str(tmp_path / "no-such-docker")
    target = f"{REGISTRY}/vla-edge/inference-cpu:v1"
    assert image.digest is None
    assert out.getvalue().splitlines() == [
        f"  aws ecr get-login-password --region {REGION} | {docker_bin} login --username AWS --password-stdin {REGISTRY}",
        f"  {docker_bin} tag vla-edge-inference:v1 {target}",
        f"  {docker_bin} push {target}",
    ]
    assert fleet.client("ecr").describe_images(repositoryName="vla-edge/inference-cpu")["imageDetails"] == []
    with pytest.raises(FleetError, match="has not been pushed"):
        _ = image.pinned


def test_a_docker_engine_that_does_not_answer_also_prints_the_commands(fleet: Fleet) -> None:
    import subprocess

    calls = []

    def runner(command, **_):
        calls.append(command)
        return subprocess.CompletedProcess(command, 1, "", "Cannot connect to the Docker daemon")

    out = io.StringIO()
    cli = DockerCli(runner=runner, out=out)
    assert not cli.build("img:1", "models/a", context="ctx")
    assert calls == [["docker", "info", "--format", "{{.ServerVersion}}"]]
    assert out.getvalue() == ("  docker buildx build --file docker/inference/Dockerfile.cpu --build-arg "
                              "MODEL_SOURCE=models/a --tag img:1 --load ctx\n")


def test_the_build_command_bakes_the_model_source_in() -> None:
    assert build_command("docker", "img:2", "models/arm-act", "docker/inference/Dockerfile.jetson", "/ctx",
                         "linux/arm64", ["LEROBOT_EXTRAS=smolvla"]) == [
        "docker", "buildx", "build", "--file", "docker/inference/Dockerfile.jetson", "--build-arg",
        "MODEL_SOURCE=models/arm-act", "--build-arg", "LEROBOT_EXTRAS=smolvla", "--platform", "linux/arm64",
        "--tag", "img:2", "--load", "/ctx"]


def test_an_existing_tag_in_an_immutable_repository_is_refused_before_pushing(fleet: Fleet, docker: FakeDocker) -> None:
    aws = _aws(fleet)
    repo = ensure_repository(aws, "vla-edge/inference-cpu", immutable_tags=True)
    push_image(aws, DockerCli(runner=docker), "local:1", repo, "v1")
    pushes = len(docker.commands)

    with pytest.raises(FleetError, match="immutable"):
        push_image(aws, DockerCli(runner=docker), "local:2", repo, "v1")
    assert len(docker.commands) == pushes


def test_a_docker_command_that_fails_says_which_and_why(fleet: Fleet) -> None:
    import subprocess

    from vla_edge.fleet.errors import DockerFailed

    def runner(command, **_):
        code = 0 if command[1] in ("info", "login", "tag") else 1
        return subprocess.CompletedProcess(command, code, "", "denied: not authorized to push")

    aws = _aws(fleet)
    repo = ensure_repository(aws, "vla-edge/inference-cpu")
    with pytest.raises(DockerFailed, match="docker push .* exited with 1: denied: not authorized to push"):
        push_image(aws, DockerCli(runner=runner), "local:1", repo, "v1")


def test_an_unknown_image_tag_is_not_found_with_a_hint(fleet: Fleet) -> None:
    aws = _aws(fleet)
    ensure_repository(aws, "vla-edge/inference-cpu")
    with pytest.raises(NotFound, match="push it first"):
        image_digest(aws, "vla-edge/inference-cpu", "nope")
