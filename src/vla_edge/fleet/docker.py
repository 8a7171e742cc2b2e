"""The docker commands of a rollout: build, login, tag, push, run when an engine answers, printed otherwise.

An operator's laptop, a CI runner without a daemon, or this project's own build machines
may have the docker client but no engine. Rather than fail, the commands are printed
exactly as they would run, so the user can paste them on a machine with Docker and go on
with ``vla-edge fleet publish``. The registry password is never printed: the printed login
reads it from ``aws ecr get-login-password``.

``runner`` is the one boundary with the docker binary (``subprocess.run``'s signature);
tests replace it, or point ``binary`` at a path that does not exist.
"""

from __future__ import annotations

import logging
import shlex
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from vla_edge.fleet.errors import DockerFailed

log = logging.getLogger(__name__)

Runner = Callable[..., "subprocess.CompletedProcess[Any]"]

DEFAULT_DOCKERFILE = "docker/inference/Dockerfile.cpu"


def dockerfile_for(variant: str) -> str:
    """docker/inference/Dockerfile.<variant>: cpu, cuda (NVIDIA GPUs) or jetson (L4T, arm64)."""
    return f"docker/inference/Dockerfile.{variant}"


def build_command(
    binary: str,
    image: str,
    model_source: str,
    dockerfile: str = DEFAULT_DOCKERFILE,
    context: str = ".",
    platform: str | None = None,
    build_args: Sequence[str] = (),
) -> list[str]:
    """``docker buildx build`` of an inference image with a model baked in.

    The one place the build is spelled out; docker/README.md describes the Dockerfiles'
    arguments: the context is the repository root, ``MODEL_SOURCE`` the model directory
    relative to it. BuildKit (buildx) is required by the Dockerfiles; ``--load`` puts the
    one-platform result in the local image store for the tag and push that follow.
    ``platform`` cross-builds, e.g. ``linux/arm64`` for a Jetson (QEMU/binfmt on the builder).
    """
    command = [binary, "buildx", "build", "--file", dockerfile, "--build-arg", f"MODEL_SOURCE={model_source}"]
    for arg in build_args:
        command += ["--build-arg", arg]
    if platform:
        command += ["--platform", platform]
    return command + ["--tag", image, "--load", context]


@dataclass
class DockerCli:
    """Runs docker commands, or prints them when ``docker info`` shows no engine (or ``print_only``)."""

    binary: str = "docker"
    runner: Runner = subprocess.run
    out: TextIO = field(default_factory=lambda: sys.stdout)
    print_only: bool = False
    printed: list[str] = field(default_factory=list)
    _engine: bool | None = None

    def engine_available(self) -> bool:
        """Whether a Docker engine answers (``docker info``); False when the binary is missing too."""
        if self.print_only:
            return False
        if self._engine is None:
            try:
                result = self.runner([self.binary, "info", "--format", "{{.ServerVersion}}"],
                                     capture_output=True, text=True, timeout=30, check=False)
                self._engine = result.returncode == 0
                if not self._engine:
                    log.info("docker info failed: %s", (result.stderr or "").strip()[:300])
            except (FileNotFoundError, PermissionError, subprocess.TimeoutExpired) as exc:
                log.info("no usable docker binary %s: %s", self.binary, exc)
                self._engine = False
        return self._engine

    def run(self, command: Sequence[str], stdin: str | None = None, shown: str | None = None) -> bool:
        """Run ``command`` (True), or print it (``shown`` instead, if given) when there is no engine (False)."""
        text = shown if shown is not None else shlex.join(command)
        if not self.engine_available():
            self.printed.append(text)
            self.out.write(f"  {text}\n")
            return False
        log.info("running: %s", shlex.join(command))
        try:
            result = self.runner(list(command), input=stdin, capture_output=True, text=True, check=False)
        except OSError as exc:
            raise DockerFailed(f"cannot run {command[0]}: {exc}") from exc
        if result.returncode != 0:
            tail = (result.stderr or result.stdout or "").strip().splitlines()[-5:]
            raise DockerFailed(f"`{text}` exited with {result.returncode}: {' / '.join(tail)}")
        return True

    def build(self, image: str, model_source: str, dockerfile: str = DEFAULT_DOCKERFILE, context: str = ".",
              platform: str | None = None, build_args: Sequence[str] = ()) -> bool:
        if self.engine_available() and not Path(dockerfile).is_file():
            raise DockerFailed(f"no Dockerfile at {dockerfile} (docker reads --file relative to the current "
                               "directory); run from the repository root or pass --dockerfile")
        return self.run(build_command(self.binary, image, model_source, dockerfile, context, platform, build_args))

    def login(self, registry: str, username: str, password: str, region: str) -> bool:
        """``docker login`` with the password on stdin; printed as the ``aws ecr get-login-password`` pipe."""
        shown = (f"aws ecr get-login-password --region {shlex.quote(region)} | "
                 f"{shlex.quote(self.binary)} login --username {shlex.quote(username)} --password-stdin "
                 f"{shlex.quote(registry)}")
        return self.run([self.binary, "login", "--username", username, "--password-stdin", registry],
                        stdin=password, shown=shown)

    def tag(self, source: str, target: str) -> bool:
        return self.run([self.binary, "tag", source, target])

    def push(self, image: str) -> bool:
        return self.run([self.binary, "push", image])
