"""Fixtures of the fleet tests; the helpers and the reasons are in tests/support/fleet.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.stub import Stubber
from support.fleet import (
    REGION,
    FakeDocker,
    Fleet,
    _client,
    granted_actions,
    make_model,
)


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Dummy credentials and no shared config: nothing here may reach a real account."""
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": REGION, "AWS_CONFIG_FILE": "/dev/null",
                       "AWS_SHARED_CREDENTIALS_FILE": "/dev/null", "AWS_EC2_METADATA_DISABLED": "true"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)


@pytest.fixture
def fleet(aws_env: None) -> Iterator[Fleet]:
    from moto import mock_aws

    with mock_aws():
        actions: set[str] = set()
        requests: list = []
        clients = {service: _client(service, actions, requests) for service in ("ecr", "iot", "s3", "sts")}
        gg_client = _client("greengrassv2", actions, requests)
        gg = Stubber(gg_client)
        gg.activate()
        clients["greengrassv2"] = gg_client
        state = Fleet(clients, gg, actions, requests=requests)
        yield state
        gg.deactivate()
    missing = sorted(state.actions - granted_actions())
    assert not missing, f"docs/iam/operator-policy.json does not grant {missing}"


@pytest.fixture
def tiny_model(tmp_path: Path) -> Path:
    """A LeRobot-shaped policy directory (config.json, a one-tensor model.safetensors): what a manifest reads."""
    return make_model(tmp_path / "context" / "models" / "arm-act", version="1.2.0")


@pytest.fixture
def docker(fleet: Fleet) -> FakeDocker:
    return FakeDocker(fleet.client("ecr"))
