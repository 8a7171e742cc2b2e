"""Every recipe and gdk-config.json validates against GDK's own schemas, and ACLs are least-privilege."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from vla_edge import messages

ROOT = Path(__file__).resolve().parents[1]
SCHEMAS = ROOT.parent / "shared" / "reference" / "gdk"
RECIPES = sorted([ROOT / "recipe.yaml", *ROOT.glob("components/*/recipe.yaml")])
GDK_CONFIGS = sorted([ROOT / "gdk-config.json", *ROOT.glob("components/*/gdk-config.json")])
GDK_RECIPE_LIMIT = 16_000


def lower_keys(value: Any) -> Any:
    """GDK lower-cases every key before validating a recipe."""
    if isinstance(value, dict):
        return {str(k).lower(): lower_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [lower_keys(v) for v in value]
    return value


def schema(name: str) -> dict[str, Any]:
    path = SCHEMAS / name
    if not path.is_file():
        pytest.skip(f"GDK schema {path} not present (it is reference data beside the checkout, not part of it)")
    return json.loads(path.read_text())


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
