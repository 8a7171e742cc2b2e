"""Errors at the AWS boundary (missing credentials, profiles, denied actions) and the commands' help."""

from __future__ import annotations

import io
import json

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber
from support.fleet import REPO_ROOT

from vla_edge.errors import VlaEdgeError
from vla_edge.fleet.aws import Aws, iam_action
from vla_edge.fleet.cli import Runtime
from vla_edge.fleet.cli import main as fleet_main
from vla_edge.fleet.errors import (
    CredentialsMissing,
    FleetError,
    NotFound,
    PermissionDenied,
)
from vla_edge.updater.cli import main as model_main


@pytest.fixture
def no_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", raising=False)
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", raising=False)


def _runtime() -> Runtime:
    return Runtime(stdout=io.StringIO(), stderr=io.StringIO())


def test_missing_credentials_say_how_to_provide_them(no_credentials: None) -> None:
    runtime = _runtime()

    code = fleet_main(["devices", "--thing-group", "robots", "--region", "us-east-1"], runtime)

    assert code == 1
    assert runtime.stderr.getvalue() == (
        "vla-edge fleet devices: no AWS credentials for iot:DescribeThingGroup: run `aws configure` (or `aws sso "
        "login`), pass --profile, or set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY; --dry-run shows the calls without "
        "credentials\n")


def test_an_unknown_profile_is_named(no_credentials: None) -> None:
    runtime = _runtime()

    assert fleet_main(["watch", "d-1", "--profile", "no-such-profile"], runtime) == 1
    assert "no-such-profile" in runtime.stderr.getvalue()
    assert "aws configure list-profiles" in runtime.stderr.getvalue()


def test_errors_convert_to_fleet_errors_keeping_the_cause() -> None:
    client = boto3.client("greengrassv2", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    stubber = Stubber(client)
    stubber.add_client_error("list_core_devices", "AccessDeniedException", "not authorized", 403)
    stubber.add_client_error("get_deployment", "ResourceNotFoundException", "no such deployment", 404)
    stubber.add_client_error("get_deployment", "ExpiredTokenException", "the token expired", 400)
    stubber.add_client_error("get_deployment", "ThrottlingException", "slow down", 429)
    stubber.activate()
    gg = Aws(clients={"greengrassv2": client}).client("greengrassv2")

    with pytest.raises(PermissionDenied) as denied:
        gg.list_core_devices()
    assert denied.value.action == "greengrass:ListCoreDevices"
    assert isinstance(denied.value.__cause__, ClientError) and isinstance(denied.value, VlaEdgeError)
    with pytest.raises(NotFound, match="no such deployment"):
        gg.get_deployment(deploymentId="d")
    with pytest.raises(CredentialsMissing, match="refresh them"):
        gg.get_deployment(deploymentId="d")
    with pytest.raises(FleetError, match=r"greengrassv2 GetDeployment failed \(ThrottlingException: slow down\)"):
        gg.get_deployment(deploymentId="d")


def test_iam_actions_use_each_services_prefix() -> None:
    assert iam_action("greengrassv2", "CreateDeployment") == "greengrass:CreateDeployment"
    assert iam_action("s3", "HeadObject") == "s3:GetObject"
    assert iam_action("ecr", "DescribeImages") == "ecr:DescribeImages"


def _help(main, argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(argv) == 0
    return capsys.readouterr().out


def test_fleet_deploy_help_explains_merging_and_every_default(capsys: pytest.CaptureFixture[str]) -> None:
    text = _help(fleet_main, ["deploy", "--help"], capsys)

    assert text.startswith("usage: vla-edge fleet deploy")
    for expected in ["a thing-group deployment\nreplaces the previous one", "--thing-group NAME", "--component NAME=VERSION",
                     "(default 5)", "(default 2)", "(default 10)", "(default 60)", "ROLLBACK", "SKIP_NOTIFY_COMPONENTS",
                     "--dry-run", "rollout defaults", "NOTIFY_COMPONENTS: the model-updater defers while the arm"]:
        assert expected in text, expected


def test_model_publish_help_walks_through_the_flow_and_why_notify_is_the_default(
        capsys: pytest.CaptureFixture[str]) -> None:
    text = _help(model_main, ["publish", "--help"], capsys)

    assert text.startswith("usage: vla-edge model publish")
    for expected in ["MODEL_DIR", "1. write its manifest", "2. docker build", "3. push it to ECR",
                     "4. publish a com.vlaedge.Inference version pinned to the image digest", "5. deploy it",
                     "restarts the\n                        inference container", "--model-only", "--no-watch",
                     "--dry-run", "(exit 3)"]:
        assert expected in text, expected


def test_every_fleet_command_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("push-image", "publish", "deploy", "watch", "devices"):
        text = _help(fleet_main, [command, "--help"], capsys)
        assert "--region" in text and "--dry-run" in text, command
    from vla_edge.cli import main

    with pytest.raises(SystemExit):
        main(["--help"])
    assert "    fleet      push images to ECR, publish components, deploy to thing groups," in capsys.readouterr().out


def test_vla_edge_dispatches_fleet(capsys: pytest.CaptureFixture[str]) -> None:
    from vla_edge.cli import main

    assert main(["fleet", "watch", "--help"]) == 0
    assert capsys.readouterr().out.startswith("usage: vla-edge fleet watch")
    assert main(["fleet", "nope"]) == 2


def test_the_device_role_policy_lets_devices_pull_images_and_models() -> None:
    policy = json.loads((REPO_ROOT / "docs/iam/device-role-policy.json").read_text())
    granted = {action: statement["Resource"] for statement in policy["Statement"] for action in statement["Action"]}

    assert granted["ecr:GetAuthorizationToken"] == "*"
    assert granted["ecr:BatchGetImage"] == granted["ecr:GetDownloadUrlForLayer"] == \
        "arn:aws:ecr:REGION:ACCOUNT_ID:repository/vla-edge/*"
    assert "s3:GetObject" in granted
    assert not any(a.startswith(("greengrass:", "iot:Create", "s3:Put")) for a in granted)  # devices only read


def test_fleet_imports_no_boto3_until_a_command_runs() -> None:
    import subprocess
    import sys

    code = ("import sys\nfor m in ('boto3', 'botocore', 'torch', 'lerobot'): sys.modules[m] = None\n"
            "import vla_edge.cli, vla_edge.fleet, vla_edge.fleet.cli, vla_edge.fleet.model_cli, vla_edge.fleet.aws, "
            "vla_edge.fleet.publish, vla_edge.fleet.watch, vla_edge.fleet.devices\n"
            "from vla_edge.fleet.cli import _parser; _parser()")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
