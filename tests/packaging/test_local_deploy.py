"""Local deployment material: every component's built recipe and artifacts, as greengrass-cli reads them."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from vla_edge.errors import ConfigurationError
from vla_edge.packaging import gdk_build, local_deploy, recipes

ROOT = Path(__file__).resolve().parents[2]
DIGEST = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/vla-edge/inference-cuda@sha256:" + "ab" * 32


@pytest.fixture
def checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Recipes, gdk-configs and constraints of the checkout; the wheel build is replaced by a stand-in file."""
    copy = tmp_path / "checkout"
    copy.mkdir()
    for name in ("pyproject.toml", "recipe.yaml", "gdk-config.json"):
        shutil.copy2(ROOT / name, copy / name)
    shutil.copytree(ROOT / "packaging", copy / "packaging")
    shutil.copytree(ROOT / "components", copy / "components", ignore=shutil.ignore_patterns("greengrass-build"))

    def fake_wheel(root: Path, into: Path) -> str:
        name = "vla_edge-0.1.0-py3-none-any.whl"
        (into / name).write_bytes(b"wheel")
        return name

    monkeypatch.setattr(gdk_build, "build_wheel", fake_wheel)
    return copy


def test_collect_lays_out_recipes_and_artifacts_for_greengrass_cli(checkout: Path) -> None:
    out = checkout / "greengrass-build" / "local-deployment"
    versions = local_deploy.collect(checkout, out, {"cpu": "vla-edge/inference-cpu:dev", "cuda": DIGEST})
    assert set(versions) == {"com.vlaedge.Suite", "com.vlaedge.Camera", "com.vlaedge.Inference",
                             "com.vlaedge.Actuator", "com.vlaedge.ModelUpdater"}
    assert sorted(p.name for p in (out / "recipes").iterdir()) == sorted(f"{n}-{v}.yaml" for n, v in versions.items())
    for name in ("com.vlaedge.Camera", "com.vlaedge.Actuator", "com.vlaedge.ModelUpdater"):
        files = sorted(p.name for p in (out / "artifacts" / name / versions[name]).iterdir())
        assert files == ["constraints.txt", "vla_edge-0.1.0-py3-none-any.whl"]
    assert not (out / "artifacts" / "com.vlaedge.Inference").exists()
    inference = yaml.safe_load((out / "recipes" / f"com.vlaedge.Inference-{versions['com.vlaedge.Inference']}.yaml").read_text())
    by_name = {m["Name"]: m for m in inference["Manifests"]}
    cpu = by_name["Linux x86_64 CPU"]
    assert cpu["Lifecycle"]["Setenv"]["VLA_EDGE_IMAGE"] == "vla-edge/inference-cpu:dev"
    assert "Artifacts" not in cpu  # a local image: nothing to pull
    cuda = next(m for m in inference["Manifests"] if m["Platform"].get("accelerator") and m["Platform"]["architecture"] == "amd64")
    assert cuda["Artifacts"] == [{"URI": f"docker:{DIGEST}"}]
    jetson = inference["Manifests"][0]
    assert recipes.placeholders_in(jetson["Lifecycle"]["Setenv"]["VLA_EDGE_IMAGE"]) == {"jetson"}
    command = local_deploy.deploy_command(out, versions)
    assert command.startswith("sudo /greengrass/v2/bin/greengrass-cli deployment create --recipeDir ")
    assert command.endswith(f"--merge com.vlaedge.Suite={versions['com.vlaedge.Suite']}")


def test_image_arguments_are_checked() -> None:
    assert local_deploy.parse_images(["cpu=img:dev"]) == {"cpu": "img:dev"}
    with pytest.raises(ConfigurationError, match="VARIANT=REFERENCE"):
        local_deploy.parse_images(["cpu"])
    with pytest.raises(ConfigurationError, match="unknown inference image variant"):
        local_deploy.parse_images(["tpu=img:dev"])
