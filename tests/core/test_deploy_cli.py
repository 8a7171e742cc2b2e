"""``vla-edge core deploy --update-config``: a configuration deployment from another process.

End to end against ``vla-edge core serve`` as a subprocess, with a validator connected over
the real awsiotsdk, and in-process against a started core for the readable output.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import awsiot.greengrasscoreipc
import pytest
from awsiot.greengrasscoreipc import model
from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2
from support import wait_for
from support.ipc import ALPHA, ALPHA_CONFIG, BETA, short_run_dir

import vla_edge
from vla_edge.core.cli import main
from vla_edge.core.control import read_configuration
from vla_edge.core.server import LocalCore, component_environment


def _child_env() -> dict[str, str]:
    source = str(Path(vla_edge.__file__).resolve().parents[1])
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [source, os.environ.get("PYTHONPATH")]))}


@pytest.fixture
def served(recipes: list[Path], tmp_path: Path) -> Iterator[Path]:
    """A ``vla-edge core serve`` subprocess for the test recipes; yields its run directory."""
    with short_run_dir() as run_dir, open(tmp_path / "serve.log", "w") as log_file:
        command = [sys.executable, "-m", "vla_edge.core", "serve", "--run-dir", str(run_dir)]
        for recipe in recipes:
            command += ["--recipe", str(recipe)]
        process = subprocess.Popen(command, env=_child_env(), stdout=log_file, stderr=subprocess.STDOUT)
        try:
            wait_for(lambda: (run_dir / "core.json").exists() or process.poll() is not None, timeout=60)
            assert process.poll() is None, (tmp_path / "serve.log").read_text()
            yield run_dir
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@contextlib.contextmanager
def gain_validator(run_dir: Path, limit: float) -> Iterator[list[Any]]:
    """Connect as Beta to the core in ``run_dir`` and reject a gain above ``limit``."""
    environment = component_environment(run_dir, BETA)
    client = GreengrassCoreIPCClientV2(client=awsiot.greengrasscoreipc.connect(
        ipc_socket=environment["AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT"],
        authtoken=environment["SVCUID"]), executor=None)
    seen: list[Any] = []

    def on_event(event: model.ValidateConfigurationUpdateEvents) -> None:
        proposal = event.validate_configuration_update_event
        seen.append(proposal)
        gain = proposal.configuration["gain"]
        report = model.ConfigurationValidityReport(
            status="ACCEPTED" if gain <= limit else "REJECTED", deployment_id=proposal.deployment_id,
            message="fine" if gain <= limit else f"gain {gain} is above {limit}")
        client.send_configuration_validity_report_async(configuration_validity_report=report)

    try:
        client.subscribe_to_validate_configuration_updates(on_stream_event=on_event)
        yield seen
    finally:
        client.close().result(5)


def deploy(run_dir: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "vla_edge.core", "deploy", "--run-dir", str(run_dir), *argv],
                          env=_child_env(), capture_output=True, text=True, timeout=120, check=False)


def test_deploy_update_config_end_to_end(served: Path, tmp_path: Path) -> None:
    update = {ALPHA: {"RESET": ["/tags"], "MERGE": {"name": "from-cli", "mqtt": {"port": 8883}}}}
    done = deploy(served, "--update-config", json.dumps(update), "--deployment-id", "cli-config-1")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "deployment cli-config-1: SUCCEEDED"
    assert lines[1] == f"  {ALPHA}: not validated (no validator subscribed); 2 key(s) changed: /mqtt/port, /name"
    assert "  update step: went ahead after" in lines[2] and "(no subscribers; 0 pre-update event(s))" in lines[2]
    (now,) = [line for line in lines if line.startswith(f"  {ALPHA} configuration now (accessControl left out")]
    assert '"name": "from-cli"' in now and "pubsub" not in now
    configuration = read_configuration(served, ALPHA)
    assert configuration["name"] == "from-cli" and configuration["mqtt"] == {"port": 8883, "host": "localhost"}
    assert configuration["tags"] == ALPHA_CONFIG["tags"]

    with gain_validator(served, 3.0) as seen:
        (tmp_path / "ok.json").write_text(json.dumps({BETA: {"MERGE": {"gain": 2.5}}}))
        done = deploy(served, "--update-config", f"@{tmp_path / 'ok.json'}", "--json")
        assert done.returncode == 0, done.stderr
        result = json.loads(done.stdout)
        assert result["status"] == "SUCCEEDED"
        assert result["components"][BETA]["validation"] == "ACCEPTED"
        assert result["components"][BETA]["message"] == "fine"
        assert result["components"][BETA]["configuration"]["gain"] == 2.5
        assert seen[0].deployment_id == result["deploymentId"]

        refused = deploy(served, "--update-config", json.dumps({BETA: {"MERGE": {"gain": 9}}}))
        assert refused.returncode == 1
        assert refused.stdout.splitlines()[0].endswith(f": FAILED: {BETA} rejected the configuration: "
                                                       "gain 9 is above 3.0")
        assert f"  {BETA}: REJECTED by the component (gain 9 is above 3.0); 1 key(s) changed: /gain" in refused.stdout
        assert "  no component-update step: nothing was applied" in refused.stdout
    assert read_configuration(served, BETA)["gain"] == 2.5


@pytest.mark.parametrize(("argv", "message"), [
    (["--update-config", json.dumps({ALPHA: {"RESET": ["tags"]}})], "RESET pointer 'tags' must start with '/'"),
    (["--update-config", json.dumps({"com.test.Nobody": {"MERGE": {}}})], "unknown component 'com.test.Nobody'"),
    (["--update-config", "{not json"], "--update-config is not valid JSON"),
    (["--update-config", "@/nonexistent/update.json"], "cannot read --update-config file"),
])
def test_deploy_update_config_errors_are_one_line(core: LocalCore, capsys: pytest.CaptureFixture[str],
                                                  argv: list[str], message: str) -> None:
    assert main(["deploy", "--run-dir", str(core.run_dir), *argv]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1
    assert captured.err.startswith("vla-edge core deploy: ") and message in captured.err
    assert core.configuration(ALPHA)["tags"] == ALPHA_CONFIG["tags"]


def test_deploy_update_config_shows_who_deferred(core: LocalCore, ipc: Callable[..., Any],
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    client = ipc(BETA)

    def on_event(event: model.ComponentUpdatePolicyEvents) -> None:
        if event.pre_update_event is not None:
            busy = core.stats()["update_deferrals"] == 0
            client.defer_component_update_async(deployment_id=event.pre_update_event.deployment_id,
                                                message="arm executing" if busy else "idle",
                                                recheck_after_ms=25 if busy else 0)

    client.subscribe_to_component_updates(on_stream_event=on_event)
    update = json.dumps({ALPHA: {"MERGE": {"name": "after-defer"}}})
    assert main(["deploy", "--run-dir", str(core.run_dir), "--update-config", update, "--recheck-min", "0"]) == 0
    out = capsys.readouterr().out
    assert f"  deferred by {BETA} for 25 ms at " in out and ": arm executing" in out
    assert "(not deferred; 2 pre-update event(s))" in out
    assert core.configuration(ALPHA)["name"] == "after-defer"
