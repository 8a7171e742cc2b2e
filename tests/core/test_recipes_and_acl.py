"""Recipe loading (case, placeholders, overrides) and accessControl evaluation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vla_edge.core.acl import PUBSUB_SERVICE, AccessControl, parse_access_control, resource_matches
from vla_edge.core.mqtt import MQTT_PROXY_SERVICE
from vla_edge.core.recipes import load_overrides, load_recipe, resolve_configurations
from vla_edge.errors import ConfigurationError

REPO = Path(__file__).resolve().parents[2]


def test_recipe_keys_are_case_insensitive_but_configuration_keys_are_not(tmp_path: Path) -> None:
    path = tmp_path / "recipe.json"
    path.write_text(json.dumps({
        "recipeformatversion": "2020-01-25", "componentName": "com.example.Lower", "COMPONENTVERSION": "2.0.1",
        "componentconfiguration": {"defaultconfiguration": {"CamelCase": {"innerKey": 1}}}}))
    recipe = load_recipe(path)
    assert (recipe.name, recipe.version) == ("com.example.Lower", "2.0.1")
    assert recipe.default_configuration == {"CamelCase": {"innerKey": 1}}


def test_gdk_placeholders_are_resolved_from_gdk_config(tmp_path: Path) -> None:
    (tmp_path / "gdk-config.json").write_text(json.dumps(
        {"component": {"com.example.Placeholder": {"version": "NEXT_PATCH"}}, "gdk_version": "1.6.2"}))
    (tmp_path / "recipe.yaml").write_text(
        "ComponentName: '{COMPONENT_NAME}'\nComponentVersion: '{COMPONENT_VERSION}'\n"
        "ComponentConfiguration:\n  DefaultConfiguration:\n    accessControl:\n"
        "      aws.greengrass.ipc.pubsub:\n        '{COMPONENT_NAME}:pubsub:1':\n"
        "          operations: ['*']\n          resources: ['a/b']\n")
    recipe = load_recipe(tmp_path / "recipe.yaml")
    assert recipe.name == "com.example.Placeholder"
    assert recipe.version == "0.0.0-local"
    (policy,) = parse_access_control(recipe.name, recipe.default_configuration)
    assert policy.policy_id == "com.example.Placeholder:pubsub:1"


def test_placeholder_without_gdk_config_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "recipe.yaml").write_text("ComponentName: '{COMPONENT_NAME}'\nComponentVersion: '1.0.0'\n")
    with pytest.raises(ConfigurationError, match="gdk-config.json does not exist"):
        load_recipe(tmp_path / "recipe.yaml")


@pytest.mark.parametrize(("text", "message"), [
    ("ComponentVersion: '1.0.0'\n", "ComponentName is missing"),
    ("ComponentName: x\n", "ComponentVersion is missing"),
    ("ComponentName: x\nComponentVersion: '1'\nComponentConfiguration:\n  DefaultConfiguration: [1]\n",
     "DefaultConfiguration must be a mapping"),
    ("- just\n- a list\n", "a recipe must be a mapping"),
    ("ComponentName: [unclosed\n", "not valid YAML"),
])
def test_malformed_recipes_name_the_problem(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "recipe.yaml").write_text(text)
    with pytest.raises(ConfigurationError, match=message):
        load_recipe(tmp_path / "recipe.yaml")


def test_overrides_deep_merge_and_unknown_names_are_refused(tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text(
        "ComponentName: com.example.A\nComponentVersion: '1.0.0'\nComponentConfiguration:\n"
        "  DefaultConfiguration:\n    camera: {width: 640, height: 480}\n    fps: 30\n")
    recipe = load_recipe(tmp_path / "r.yaml")
    overrides = tmp_path / "overrides.yaml"
    overrides.write_text("com.example.A:\n  camera: {width: 320}\n  extra: true\n")
    resolved = resolve_configurations([recipe], load_overrides(overrides))
    assert resolved["com.example.A"] == {"camera": {"width": 320, "height": 480}, "fps": 30, "extra": True}
    with pytest.raises(ConfigurationError, match=r"unknown component 'com.example.Typo'.*com.example.A"):
        resolve_configurations([recipe], {"com.example.Typo": {"fps": 1}})


@pytest.mark.parametrize("relative", ["components/camera/recipe.yaml", "components/model-updater/recipe.yaml"])
def test_the_projects_own_recipes_load(relative: str) -> None:
    recipe = load_recipe(REPO / relative)
    assert recipe.name.startswith("com.vlaedge.")
    policies = parse_access_control(recipe.name, recipe.default_configuration)
    assert any(p.service == PUBSUB_SERVICE for p in policies)
    assert {p.service for p in policies} <= {PUBSUB_SERVICE, MQTT_PROXY_SERVICE}  # what the local core serves


@pytest.mark.parametrize(("pattern", "resource", "allowed"), [
    ("topic/a", "topic/a", True),
    ("topic/a", "topic/b", False),
    ("*", "anything/at/all", True),
    ("vla-edge/*", "vla-edge/camera/front/frame", True),
    ("vla-edge/*/frame", "vla-edge/camera/front/frame", True),
    ("vla-edge/*/frame", "vla-edge/camera/front/depth", False),
    ("vla-edge/camera/+/frame", "vla-edge/camera/front/frame", True),
    ("vla-edge/camera/+/frame", "vla-edge/camera/front/side/frame", False),
    ("vla-edge/#", "vla-edge", True),
    ("vla-edge/#", "vla-edge/a/b/c", True),
    ("vla-edge/#", "vla-edge/camera/+", True),  # a filter inside the grant
    ("vla-edge/#", "#", False),  # a wider filter than the grant
    ("vla-edge/#", "other/x", False),
    ("a/#/b", "a/x/b", False),  # not a valid MQTT pattern: literal only
])
def test_resource_matching(pattern: str, resource: str, allowed: bool) -> None:
    assert resource_matches(pattern, resource) is allowed


def test_operations_star_means_all_and_denial_reads_like_the_nucleus() -> None:
    acl = AccessControl("thing-1")
    acl.set_policies("com.example.A", parse_access_control("com.example.A", {"accessControl": {PUBSUB_SERVICE: {
        "p1": {"operations": ["*"], "resources": ["devices/{iot:thingName}/status"]}}}}))
    assert acl.is_authorized("com.example.A", PUBSUB_SERVICE, "aws.greengrass#SubscribeToTopic",
                             "devices/thing-1/status")
    assert not acl.is_authorized("com.example.A", PUBSUB_SERVICE, "aws.greengrass#PublishToTopic",
                                 "devices/thing-2/status")
    assert not acl.is_authorized("com.example.B", PUBSUB_SERVICE, "aws.greengrass#PublishToTopic",
                                 "devices/thing-1/status")
    assert AccessControl.denial("com.example.B", PUBSUB_SERVICE, "aws.greengrass#PublishToTopic", "t/1") == (
        "Principal com.example.B is not authorized to perform "
        "aws.greengrass.ipc.pubsub:aws.greengrass#PublishToTopic on resource t/1")


@pytest.mark.parametrize("block", [
    ["not", "a", "mapping"],
    {PUBSUB_SERVICE: {"p": {"operations": [], "resources": ["a"]}}},
    {PUBSUB_SERVICE: {"p": {"operations": ["*"], "resources": [1]}}},
])
def test_malformed_access_control_is_a_configuration_error(block: object) -> None:
    with pytest.raises(ConfigurationError, match="com.example.A: accessControl"):
        parse_access_control("com.example.A", {"accessControl": block})
