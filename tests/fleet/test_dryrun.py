"""``--dry-run``: every AWS call printed with its parameters, none made, no credentials needed."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest
from support.fleet import REPO_ROOT

from vla_edge.fleet.cli import Runtime
from vla_edge.fleet.cli import main as fleet_main
from vla_edge.updater.cli import main as model_main


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """No credentials anywhere, and any request botocore would send fails the test."""
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_REGION",
                "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    sent: list[str] = []

    def refuse(self, operation_model, request_dict, *args, **kwargs):
        sent.append(operation_model.name)
        raise AssertionError(f"a dry run sent {operation_model.name}")

    monkeypatch.setattr("botocore.endpoint.Endpoint.make_request", refuse)
    return sent


def _calls(output: str) -> list[str]:
    return re.findall(r"^\[dry-run\] (\S+) \(\w+\)$", output, flags=re.MULTILINE)


def test_model_publish_dry_run_shows_every_call_and_docker_command(offline: list[str], tiny_model: Path) -> None:
    runtime = Runtime(stdout=io.StringIO(), stderr=io.StringIO())

    code = model_main(["publish", str(tiny_model), "--thing-group", "robots", "--region", "eu-central-1",
                       "--context", str(tiny_model.parents[1]), "--dry-run",
                       "--recipe", str(REPO_ROOT / "components/inference/recipe.yaml")], runtime)

    assert code == 0, runtime.stderr.getvalue()
    out = runtime.stdout.getvalue()
    assert _calls(out) == [
        "ecr.describe_repositories", "ecr.describe_images", "ecr.get_authorization_token", "ecr.describe_images",
        "sts.get_caller_identity", "greengrassv2.list_component_versions", "greengrassv2.create_component_version",
        "iot.describe_thing_group", "greengrassv2.list_deployments", "greengrassv2.create_deployment",
    ]
    assert ("docker commands (dry run: printed, not run):\n  docker buildx build --file "
            f"{tiny_model.parents[1]}/docker/inference/Dockerfile.cpu --build-arg MODEL_SOURCE=models/arm-act") in out
    assert "  docker push 123456789012.dkr.ecr.eu-central-1.amazonaws.com/vla-edge/inference-cpu:arm-act-1.2.0" in out
    assert "inlineRecipe:\n  | RecipeFormatVersion: '2020-01-25'" in out  # the recipe, readable
    deployment = json.loads(out.split("[dry-run] greengrassv2.create_deployment (CreateDeployment)\n", 1)[1]
                            .split("\ncom.vlaedge", 1)[0].split("\ndeployment ", 1)[0])
    assert deployment["targetArn"] == "arn:aws:iot:eu-central-1:123456789012:thinggroup/robots"
    assert deployment["deploymentPolicies"]["failureHandlingPolicy"] == "ROLLBACK"
    assert not (tiny_model / "vla_edge_manifest.json").exists(), "a dry run writes no manifest"
    assert offline == []


def test_deploy_dry_run_prints_the_request_it_would_send(offline: list[str]) -> None:
    runtime = Runtime(stdout=io.StringIO(), stderr=io.StringIO())

    code = fleet_main(["deploy", "--thing-group", "robots", "--component", "com.vlaedge.Inference=1.0.4",
                       "--skip-notify", "--dry-run", "--watch"], runtime)

    assert code == 0, runtime.stderr.getvalue()
    out = runtime.stdout.getvalue()
    assert _calls(out) == ["iot.describe_thing_group", "greengrassv2.list_deployments", "greengrassv2.create_deployment"]
    request = json.loads(out.split("(CreateDeployment)\n", 1)[1].split("\ndeployment ", 1)[0])
    assert request["components"] == {"com.vlaedge.Inference": {"componentVersion": "1.0.4"}}
    assert request["deploymentPolicies"]["componentUpdatePolicy"] == {"action": "SKIP_NOTIFY_COMPONENTS",
                                                                      "timeoutInSeconds": 120}
    assert request["targetArn"] == "arn:aws:iot:us-east-1:123456789012:thinggroup/robots"  # no region: us-east-1
    assert offline == []


def test_a_dry_run_request_the_real_service_would_reject_fails_the_same_way(offline: list[str]) -> None:
    from vla_edge.fleet.dryrun import DryRunClient

    client = DryRunClient("greengrassv2", "us-east-1", io.StringIO())
    with pytest.raises(Exception, match="Missing required parameter"):
        client.create_deployment(components={})


def test_watch_dry_run_shows_one_poll(offline: list[str]) -> None:
    runtime = Runtime(stdout=io.StringIO(), stderr=io.StringIO())

    assert fleet_main(["watch", "d-1", "--dry-run", "--poll", "30"], runtime) == 0

    out = runtime.stdout.getvalue()
    assert _calls(out) == ["greengrassv2.get_deployment", "greengrassv2.list_core_devices", "iot.describe_job"]
    assert out.endswith("dry run: one poll shown; watching repeats it every 30 s until every device finished\n")
    assert offline == []
