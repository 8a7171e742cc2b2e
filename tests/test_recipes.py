"""Every recipe and gdk-config.json validates against GDK's own schemas, and ACLs are least-privilege."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from support.gdk import SCHEMAS, gdk_schema, lower_keys

from vla_edge import messages

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted([ROOT / "recipe.yaml", *ROOT.glob("components/*/recipe.yaml")])
GDK_CONFIGS = sorted([ROOT / "gdk-config.json", *ROOT.glob("components/*/gdk-config.json")])
GDK_RECIPE_LIMIT = 16_000


def schema(name: str) -> dict[str, Any]:
    found = gdk_schema(name)
    if found is None:
        pytest.skip(f"GDK schema {SCHEMAS / name} not present (it is reference data beside the checkout, not part of it)")
    return found


def test_every_component_folder_has_recipe_and_gdk_config() -> None:
    folders = sorted(p.parent for p in ROOT.glob("components/*/recipe.yaml"))
    assert {f.name for f in folders} >= {"camera", "model-updater"}
    for folder in folders:
        assert (folder / "gdk-config.json").is_file(), folder


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: str(p.relative_to(ROOT)))
def test_recipe_validates_against_gdk_schema(recipe: Path) -> None:
    import jsonschema

    assert recipe.stat().st_size < GDK_RECIPE_LIMIT
    jsonschema.Draft7Validator(schema("recipe_schema.json")).validate(lower_keys(yaml.safe_load(recipe.read_text())))


@pytest.mark.parametrize("config", GDK_CONFIGS, ids=lambda p: str(p.relative_to(ROOT)))
def test_gdk_config_validates_against_gdk_schema(config: Path) -> None:
    import jsonschema

    data = json.loads(config.read_text())
    jsonschema.Draft7Validator(schema("config_schema.json")).validate(data)
    (name,) = data["component"]
    recipe = yaml.safe_load((config.parent / "recipe.yaml").read_text())
    assert recipe["ComponentName"] == name


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: str(p.relative_to(ROOT)))
def test_access_control_is_least_privilege(recipe: Path) -> None:
    data = yaml.safe_load(recipe.read_text())
    acl = data.get("ComponentConfiguration", {}).get("DefaultConfiguration", {}).get("accessControl", {})
    for policies in acl.values():
        for policy in policies.values():
            assert "*" not in policy["operations"]
            for resource in policy["resources"]:
                assert resource != "*" and resource.startswith(messages.ROOT + "/"), resource
                assert "#" not in resource, f"{recipe}: {resource} grants a whole subtree"


# --- platforms, pinned installs, documented configuration -----------------------------------------

import re  # noqa: E402
import tomllib  # noqa: E402

from vla_edge.components.actuator.config import ActuatorConfig  # noqa: E402
from vla_edge.components.camera.config import CameraComponentConfig  # noqa: E402
from vla_edge.components.inference.config import InferenceConfig  # noqa: E402
from vla_edge.components.model_updater.config import ModelUpdaterConfig  # noqa: E402
from vla_edge.packaging import recipes as recipe_images  # noqa: E402

VENV_COMPONENTS = {"camera": "camera", "actuator": "actuator", "model-updater": "updater"}
CONFIG_MODELS = {
    "camera": CameraComponentConfig,
    "inference": InferenceConfig,
    "actuator": ActuatorConfig,
    "model-updater": ModelUpdaterConfig,
}
OPTIONAL_DOCUMENTED_KEYS: dict[str, set[str]] = {}
"""Configuration fields a recipe may leave out of DefaultConfiguration (each documented in a comment there)."""
PROJECT_VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def load(folder: str) -> dict[str, Any]:
    return yaml.safe_load((ROOT / "components" / folder / "recipe.yaml").read_text())


@pytest.mark.parametrize("folder", sorted(VENV_COMPONENTS))
def test_python_components_install_the_wheel_with_pinned_dependencies_on_both_architectures(folder: str) -> None:
    recipe = load(folder)
    manifests = recipe["Manifests"]
    assert [(m["Platform"]["os"], m["Platform"]["architecture"]) for m in manifests] == [
        ("linux", "aarch64"), ("linux", "amd64")]
    assert manifests[0]["Lifecycle"] == manifests[1]["Lifecycle"]
    assert manifests[0]["Artifacts"] == manifests[1]["Artifacts"]
    wheel = f"vla_edge-{PROJECT_VERSION}-py3-none-any.whl"
    assert [a["URI"] for a in manifests[0]["Artifacts"]] == [
        f"s3://BUCKET_NAME/COMPONENT_NAME/COMPONENT_VERSION/{wheel}",
        "s3://BUCKET_NAME/COMPONENT_NAME/COMPONENT_VERSION/constraints.txt",
    ]
    install = " ".join(manifests[0]["Lifecycle"]["install"]["Script"].split())
    assert install == (
        "python3 -m venv {work:path}/venv && {work:path}/venv/bin/pip install --no-cache-dir "
        f'-c {{artifacts:path}}/constraints.txt "{{artifacts:path}}/{wheel}[{VENV_COMPONENTS[folder]}]"'
    )
    assert manifests[0]["Lifecycle"]["install"]["RequiresPrivilege"] is False


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_wheel_a_recipe_names_is_pyprojects_version(recipe: Path) -> None:
    for version in re.findall(r"vla_edge-([^-/\s\"]+)-py3-none-any\.whl", recipe.read_text()):
        assert version == PROJECT_VERSION, f"{recipe}: wheel {version}, pyproject {PROJECT_VERSION}"


@pytest.mark.parametrize("folder", sorted(CONFIG_MODELS))
def test_recipe_configuration_keys_are_exactly_the_config_models_fields(folder: str) -> None:
    model = CONFIG_MODELS[folder]
    fields = {info.alias or name for name, info in model.model_fields.items()}
    recipe_keys = set(load(folder)["ComponentConfiguration"]["DefaultConfiguration"]) - {"accessControl"}
    optional = OPTIONAL_DOCUMENTED_KEYS.get(folder, set())
    assert recipe_keys - fields == set(), f"{folder}: recipe keys that are no configuration field"
    assert fields - recipe_keys - optional == set(), f"{folder}: configuration fields missing from the recipe"
    # The recipe's defaults are a valid configuration.
    from vla_edge.components.base import load_config

    load_config(model, load(folder)["ComponentConfiguration"]["DefaultConfiguration"])


@pytest.mark.parametrize("folder", sorted(CONFIG_MODELS))
def test_every_configuration_key_has_a_comment_in_the_recipe(folder: str) -> None:
    lines = (ROOT / "components" / folder / "recipe.yaml").read_text().splitlines()
    start = lines.index("  DefaultConfiguration:") + 1
    documented, previous = set(), ""
    for line in lines[start:]:
        if line and not line.startswith("    "):
            break
        match = re.match(r"^    ([A-Za-z][A-Za-z0-9]*):", line)
        if match and match.group(1) != "accessControl":
            assert previous.startswith("    # ") or " # " in line, f"{folder}: {match.group(1)} has no comment"
            documented.add(match.group(1))
        if line.strip():
            previous = line
    optional = OPTIONAL_DOCUMENTED_KEYS.get(folder, set())
    assert documented | optional >= set(load(folder)["ComponentConfiguration"]["DefaultConfiguration"]) - {"accessControl"}
    text = "\n".join(lines)
    for key in optional:
        assert f"# {key}" in text or f"{key}:" in text, f"{folder}: optional key {key} is not documented"


def test_inference_runs_the_image_for_each_platform_pinned_by_digest() -> None:
    recipe = load("inference")
    assert set(recipe["ComponentDependencies"]) >= {
        "aws.greengrass.DockerApplicationManager", "aws.greengrass.TokenExchangeService"}
    manifests = recipe["Manifests"]
    platforms = [(m["Platform"]["architecture"], m["Platform"].get("accelerator")) for m in manifests]
    assert platforms == [("aarch64", "nvidia"), ("amd64", "nvidia"), ("aarch64", None), ("amd64", None)]
    gpu_flags = [m["Lifecycle"]["Setenv"]["VLA_EDGE_DOCKER_GPU"] for m in manifests]
    assert gpu_flags == ["--runtime nvidia", "--gpus all", "", ""]
    variants = [recipe_images.placeholder(v) for v in ("jetson", "cuda", "cpu", "cpu")]
    for manifest, image in zip(manifests, variants, strict=True):
        assert manifest["Platform"]["os"] == "linux"
        assert manifest["Artifacts"] == [{"URI": f"docker:{image}"}]
        assert manifest["Lifecycle"]["Setenv"]["VLA_EDGE_IMAGE"] == image
        assert re.fullmatch(r".+@sha256:[0-9a-f]{64}", image)
        assert manifest["Lifecycle"]["run"] == manifests[0]["Lifecycle"]["run"]
    run = " ".join(manifests[0]["Lifecycle"]["run"]["Script"].split())
    socket = "$AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT"
    for needed in (f"-v {socket}:{socket}", "-e SVCUID", "-e AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT",
                   "-v {configuration:/frameDir}:{configuration:/frameDir}:ro",
                   '--group-add "$(stat -c %g {configuration:/frameDir})"', '-v "$STORE:$STORE:ro"',
                   "--network none", "$VLA_EDGE_DOCKER_GPU", '"$VLA_EDGE_IMAGE"'):
        assert needed in run, needed


def test_image_placeholders_are_rendered_per_variant_and_only_with_digests() -> None:
    from vla_edge.errors import ConfigurationError

    text = (ROOT / "components" / "inference" / "recipe.yaml").read_text()
    assert recipe_images.placeholders_in(text) == {"cpu", "cuda", "jetson"}
    images = {v: f"123456789012.dkr.ecr.eu-west-1.amazonaws.com/vla-edge/inference-{v}@sha256:{c * 64}"
              for v, c in (("cpu", "a"), ("cuda", "b"), ("jetson", "c"))}
    rendered = yaml.safe_load(recipe_images.render_images(text, images))
    assert [m["Artifacts"][0]["URI"] for m in rendered["Manifests"]] == [
        f"docker:{images[v]}" for v in ("jetson", "cuda", "cpu", "cpu")]
    assert [m["Lifecycle"]["Setenv"]["VLA_EDGE_IMAGE"] for m in rendered["Manifests"]] == [
        images[v] for v in ("jetson", "cuda", "cpu", "cpu")]
    with pytest.raises(ConfigurationError, match="jetson"):
        recipe_images.render_images(text, {k: v for k, v in images.items() if k != "jetson"})
    with pytest.raises(ConfigurationError, match="pinned by digest"):
        recipe_images.render_images(text, {**images, "cpu": "vla-edge/inference:latest"})
