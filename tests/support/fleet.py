"""Helpers of the fleet tests (tests/fleet): moto for ECR, IoT, S3 and STS; botocore's Stubber for greengrassv2.

moto does not implement greengrassv2, so every Greengrass call is answered by a Stubber on
a real ``boto3.client("greengrassv2")``: the Stubber checks each request against the
service model and against the exact parameters a test expects.

Every client made here reports each operation it is asked for (botocore's
``before-parameter-build`` event, which fires for stubbed calls too); at the end of each
test every one of them must be granted by docs/iam/operator-policy.json.
"""

from __future__ import annotations

import io
import json
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore.stub import Stubber

from vla_edge.fleet.aws import iam_action
from vla_edge.fleet.cli import Runtime

REGION = "us-east-1"
ACCOUNT = "123456789012"
REPO_ROOT = Path(__file__).resolve().parents[2]
OPERATOR_POLICY = REPO_ROOT / "docs" / "iam" / "operator-policy.json"


def granted_actions() -> set[str]:
    policy = json.loads(OPERATOR_POLICY.read_text())
    actions: set[str] = set()
    for statement in policy["Statement"]:
        if statement["Effect"] == "Allow":
            listed = statement["Action"]
            actions.update([listed] if isinstance(listed, str) else listed)
    return actions


@dataclass
class Fleet:
    """The AWS side of a test: moto-backed clients, a stubbed greengrassv2 and an IoT job stub."""

    clients: dict[str, Any]
    gg: Stubber
    actions: set[str] = field(default_factory=set)
    stubbers: list[Stubber] = field(default_factory=list)
    requests: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    """(service, operation, params) of every call the fleet code made, in order."""

    def sent(self, operation: str) -> list[dict[str, Any]]:
        return [params for _, name, params in self.requests if name == operation]

    def client(self, service: str) -> Any:
        """A client for the test's own setup and checks (same moto backend; its calls are not the fleet code's)."""
        return boto3.client(service, region_name=REGION, aws_access_key_id="testing", aws_secret_access_key="testing")

    def stub(self, service: str) -> Stubber:
        """Replace ``service``'s moto client by a stubbed one (for calls moto cannot answer truly)."""
        client = _client(service, self.actions, self.requests)
        stubber = Stubber(client)
        stubber.activate()
        self.clients[service] = client
        self.stubbers.append(stubber)
        return stubber

    def runtime(self, docker_runner: Callable[..., Any] | None = None, **kwargs: Any) -> Runtime:
        return Runtime(clients=dict(self.clients), docker_runner=docker_runner, stdout=io.StringIO(),
                       stderr=io.StringIO(), **kwargs)


def _client(service: str, actions: set[str], requests: list[tuple[str, str, dict[str, Any]]]) -> Any:
    client = boto3.client(service, region_name=REGION, aws_access_key_id="testing", aws_secret_access_key="testing")

    def record(model: Any, params: dict[str, Any], **_: Any) -> None:
        actions.add(iam_action(service, model.name))
        requests.append((service, model.name, dict(params)))

    client.meta.events.register("before-parameter-build", record)
    return client


def make_model(directory: Path, version: str, name: str = "arm-act", seed: int = 0) -> Path:
    directory.mkdir(parents=True)
    config = {
        "type": "act",
        "input_features": {"observation.state": {"type": "STATE", "shape": [6]},
                           "observation.images.front": {"type": "VISUAL", "shape": [3, 48, 64]}},
        "output_features": {"action": {"type": "ACTION", "shape": [6]}},
    }
    (directory / "config.json").write_text(json.dumps(config))
    header = json.dumps({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}).encode()
    (directory / "model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + struct.pack("<2f", seed, 1))
    (directory / "vla_edge_model.json").write_text(json.dumps({"name": name, "version": version}))
    return directory


@dataclass
class FakeDocker:
    """The docker binary, faked at its process boundary: records each command, and a push lands in (moto's) ECR."""

    ecr: Any
    commands: list[list[str]] = field(default_factory=list)
    stdin: list[str | None] = field(default_factory=list)
    pushed: dict[str, str] = field(default_factory=dict)

    def __call__(self, command: list[str], input: str | None = None, **_: Any) -> Any:
        import hashlib
        import subprocess

        self.commands.append(command)
        self.stdin.append(input)
        if command[1] == "push":
            repository_uri, tag = command[2].rsplit(":", 1)
            manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                                   "config": {"digest": "sha256:" + hashlib.sha256(command[2].encode()).hexdigest()},
                                   "layers": []})
            put = self.ecr.put_image(repositoryName=repository_uri.split("/", 1)[1], imageManifest=manifest, imageTag=tag)
            self.pushed[command[2]] = put["image"]["imageId"]["imageDigest"]
        return subprocess.CompletedProcess(command, 0, stdout="", stderr="")

    def names(self) -> list[str]:
        return [" ".join(c[:2]) for c in self.commands]


def group_arn(name: str) -> str:
    return f"arn:aws:iot:{REGION}:{ACCOUNT}:thinggroup/{name}"


def inference_arn(version: str | None = None) -> str:
    base = f"arn:aws:greengrass:{REGION}:{ACCOUNT}:components:com.vlaedge.Inference"
    return f"{base}:versions:{version}" if version else base


def component_version_arn(name: str, version: str) -> str:
    return f"arn:aws:greengrass:{REGION}:{ACCOUNT}:components:{name}:versions:{version}"


def stub_recipe(stubber: Stubber, name: str, version: str, requires: dict[str, str] | None = None) -> None:
    """get_component of one version: a recipe with these dependency version requirements."""
    import yaml

    recipe = {"ComponentName": name, "ComponentVersion": version,
              "ComponentDependencies": {k: {"VersionRequirement": v} for k, v in (requires or {}).items()}}
    stubber.add_response("get_component", {"recipeOutputFormat": "YAML", "recipe": yaml.safe_dump(recipe).encode()},
                         {"arn": component_version_arn(name, version), "recipeOutputFormat": "YAML"})
