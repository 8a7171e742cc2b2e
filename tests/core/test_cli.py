"""``vla-edge core env`` and ``vla-edge core serve`` (as a real subprocess stopped with SIGTERM)."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import awsiot.greengrasscoreipc
import pytest
from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2
from support.ipc import ALPHA, short_run_dir
from support import wait_for

import vla_edge
from vla_edge.core.cli import main
from vla_edge.core.server import LocalCore, component_environment


def test_env_prints_shell_quoted_exports(core: LocalCore, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["env", ALPHA, "--run-dir", str(core.run_dir)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert all(line.startswith("export ") for line in lines)
    parsed = dict(shlex.split(line)[1].split("=", 1) for line in lines)
    assert parsed == component_environment(core.run_dir, ALPHA)


def test_env_output_survives_a_real_shell(recipes: list[Path]) -> None:
    with short_run_dir() as base:
        spaced = base.parent / "with space"
        core = LocalCore(spaced, recipes).start()
        try:
            script = f'eval "$({sys.executable} -m vla_edge.core env {ALPHA} --run-dir {shlex.quote(str(spaced))})"' \
                     ' && printf %s "$AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT"'
            result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=_child_env(),
                                    timeout=60, check=True)
            assert result.stdout == str(core.socket_path)
        finally:
            core.stop()


def test_env_for_unknown_component_or_missing_core_fails(core: LocalCore, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["env", "com.test.Nope", "--run-dir", str(core.run_dir)]) == 1
    assert "com.test.Alpha" in capsys.readouterr().err  # names the components it knows
    assert main(["env", ALPHA, "--run-dir", str(tmp_path)]) == 1
    assert "no local core is running" in capsys.readouterr().err


def _child_env() -> dict[str, str]:
    source = str(Path(vla_edge.__file__).resolve().parents[1])
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [source, os.environ.get("PYTHONPATH")]))}


def test_serve_runs_until_sigterm_and_exits_zero(recipes: list[Path]) -> None:
    with short_run_dir() as run_dir:
        command = [sys.executable, "-m", "vla_edge.core", "serve", "--run-dir", str(run_dir)]
        for recipe in recipes:
            command += ["--recipe", str(recipe)]
        process = subprocess.Popen(command, env=_child_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   text=True)
        try:
            wait_for(lambda: (run_dir / "core.json").exists() or process.poll() is not None, timeout=30)
            assert process.poll() is None, process.stdout.read() if process.stdout else ""
            environment = component_environment(run_dir, ALPHA)
            connection = awsiot.greengrasscoreipc.connect(
                ipc_socket=environment["AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT"],
                authtoken=environment["SVCUID"])
            client = GreengrassCoreIPCClientV2(client=connection, executor=None)
            assert client.get_configuration(key_path=["name"]).value == {"name": "alpha"}
            client.close().result(5)
            process.send_signal(signal.SIGTERM)
            output, _ = process.communicate(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        assert process.returncode == 0, output
        assert "received SIGTERM, stopping" in output
        assert not (run_dir / "core.json").exists() and not (run_dir / "ipc.socket").exists()


def test_serve_with_a_bad_recipe_exits_non_zero(tmp_path: Path) -> None:
    (tmp_path / "broken.yaml").write_text("ComponentVersion: '1.0.0'\n")
    with short_run_dir() as run_dir:
        result = subprocess.run([sys.executable, "-m", "vla_edge.core", "serve", "--run-dir", str(run_dir),
                                 "--recipe", str(tmp_path / "broken.yaml")], env=_child_env(), capture_output=True,
                                text=True, timeout=60)
    assert result.returncode == 1
    assert "ComponentName is missing" in result.stderr
