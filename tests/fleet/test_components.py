"""The inference recipe pinned by digest and recording its model; component versions via a stubbed greengrassv2."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import pytest
import yaml
from support.fleet import REPO_ROOT, Fleet, inference_arn

from vla_edge.fleet.aws import Aws
from vla_edge.fleet.components import (
    model_of_recipe,
    publish_component,
    render_inference_recipe,
    resolve_version,
)
from vla_edge.fleet.errors import ComponentRejected, FleetError
from vla_edge.messages import ModelRef

MODEL = ModelRef(name="arm-act", version="1.2.0", sha256="ab" * 32)
CPU = "123456789012.dkr.ecr.us-east-1.amazonaws.com/vla-edge/inference-cpu@sha256:" + "1" * 64
CUDA = "123456789012.dkr.ecr.us-east-1.amazonaws.com/vla-edge/inference-cuda@sha256:" + "2" * 64
TEMPLATE = """\
RecipeFormatVersion: "2020-01-25"
ComponentName: com.vlaedge.Inference
ComponentVersion: "0.1.0"
ComponentDescription: Runs a policy.
Manifests:
  - Platform: {os: linux, accelerator: nvidia}
    Lifecycle:
      Setenv:
        VLA_EDGE_IMAGE: ACCOUNT.dkr.ecr.REGION.amazonaws.com/vla-edge/inference-cuda@sha256:ZEROS
      run:
        Script: exec docker run --rm "$VLA_EDGE_IMAGE"
    Artifacts:
      - URI: docker:ACCOUNT.dkr.ecr.REGION.amazonaws.com/vla-edge/inference-cuda@sha256:ZEROS
  - Platform: {os: linux}
    Lifecycle:
      run:
        Script: exec docker run --rm ACCOUNT.dkr.ecr.REGION.amazonaws.com/vla-edge/inference-cpu@sha256:ZEROS
    Artifacts:
      - URI: docker:ACCOUNT.dkr.ecr.REGION.amazonaws.com/vla-edge/inference-cpu@sha256:ZEROS
""".replace("ZEROS", "0" * 64)
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _aws(fleet: Fleet) -> Aws:
    return Aws(clients=fleet.clients, out=io.StringIO())


def test_each_manifest_pulls_and_runs_the_image_of_its_variant_and_the_model_is_recorded() -> None:
    recipe = yaml.safe_load(render_inference_recipe(TEMPLATE, "1.0.7", {"cpu": CPU, "cuda": CUDA}, MODEL))

    assert recipe["ComponentVersion"] == "1.0.7"
    cuda, cpu = recipe["Manifests"]
    assert cuda["Artifacts"] == [{"URI": f"docker:{CUDA}"}]
    assert cuda["Lifecycle"]["Setenv"]["VLA_EDGE_IMAGE"] == CUDA
    assert cpu["Artifacts"] == [{"URI": f"docker:{CPU}"}]
    assert cpu["Lifecycle"]["run"]["Script"] == f"exec docker run --rm {CPU}"
    assert recipe["ComponentDescription"] == f"Runs a policy. Image model: [vla-edge-model name=arm-act version=1.2.0 sha256={'ab' * 32}]"
    assert model_of_recipe(yaml.safe_dump(recipe)) == MODEL


def test_a_manifest_without_an_image_for_its_variant_is_left_out() -> None:
    recipe = yaml.safe_load(render_inference_recipe(TEMPLATE, "1.0.7", {"cpu": CPU}, MODEL))

    assert [m["Artifacts"][0]["URI"] for m in recipe["Manifests"]] == [f"docker:{CPU}"]


def test_the_project_recipe_renders_with_only_pushed_images_and_keeps_its_configuration() -> None:
    template = (REPO_ROOT / "components/inference/recipe.yaml").read_text()
    original = yaml.safe_load(template)

    text = render_inference_recipe(template, "2.0.0", {"cpu": CPU}, MODEL)

    recipe = yaml.safe_load(text)
    assert "0" * 64 not in text and "ACCOUNT.dkr.ecr" not in text
    assert recipe["ComponentConfiguration"] == original["ComponentConfiguration"]
    assert recipe["Manifests"], "the CPU manifests stay"
    for manifest in recipe["Manifests"]:
        assert [a["URI"] for a in manifest["Artifacts"]] == [f"docker:{CPU}"]
        assert CPU in yaml.safe_dump(manifest["Lifecycle"])
    assert model_of_recipe(text) == MODEL


def test_only_the_manifests_of_the_architecture_an_image_was_built_for_take_it(
        caplog: pytest.LogCaptureFixture) -> None:
    template = (REPO_ROOT / "components/inference/recipe.yaml").read_text()

    with caplog.at_level("WARNING"):
        recipe = yaml.safe_load(render_inference_recipe(template, "2.0.0", {"cpu": CPU}, MODEL, {"cpu": "amd64"}))

    assert [m["Platform"] for m in recipe["Manifests"]] == [{"os": "linux", "architecture": "amd64"}]
    assert "the cpu image was built for amd64 only; build it for aarch64 too" in caplog.text
    arm = yaml.safe_load(render_inference_recipe(template, "2.0.0", {"cpu": CPU}, MODEL, {"cpu": "aarch64"}))
    assert [m["Platform"] for m in arm["Manifests"]] == [{"os": "linux", "architecture": "aarch64"}]


def test_images_not_pinned_by_digest_or_fitting_no_manifest_are_refused() -> None:
    with pytest.raises(FleetError, match="not pinned by digest"):
        render_inference_recipe(TEMPLATE, "1.0.0", {"cpu": CPU.split("@")[0] + ":latest"}, None)
    with pytest.raises(FleetError, match="no manifest of the recipe takes"):
        render_inference_recipe(TEMPLATE, "1.0.0", {"jetson": CPU}, None)


def test_next_patch_follows_the_newest_published_version(fleet: Fleet) -> None:
    arn = inference_arn()
    fleet.gg.add_response("list_component_versions", {
        "componentVersions": [{"componentVersion": "1.0.9"}, {"componentVersion": "1.0.10"}], "nextToken": "t"},
        {"arn": arn})
    fleet.gg.add_response("list_component_versions", {"componentVersions": [{"componentVersion": "0.9.99"}]},
                          {"arn": arn, "nextToken": "t"})

    assert resolve_version(_aws(fleet), "com.vlaedge.Inference", "NEXT_PATCH", "0.1.0") == "1.0.11"
    fleet.gg.assert_no_pending_responses()


def test_next_patch_of_a_new_component_is_the_recipes_version(fleet: Fleet) -> None:
    fleet.gg.add_client_error("list_component_versions", "ResourceNotFoundException", "no such component", 404,
                              expected_params={"arn": inference_arn()})

    assert resolve_version(_aws(fleet), "com.vlaedge.Inference", "NEXT_PATCH", "0.1.0") == "0.1.0"


def test_an_explicit_version_is_checked_and_used_as_is(fleet: Fleet) -> None:
    assert resolve_version(_aws(fleet), "com.vlaedge.Inference", "3.1.4", "0.1.0") == "3.1.4"
    with pytest.raises(FleetError, match="MAJOR.MINOR.PATCH"):
        resolve_version(_aws(fleet), "com.vlaedge.Inference", "3.1", "0.1.0")


def _created(state: str) -> dict:
    return {"arn": inference_arn("1.0.7"), "componentName": "com.vlaedge.Inference", "componentVersion": "1.0.7",
            "creationTimestamp": NOW, "status": {"componentState": state}}


def test_publishing_sends_the_inline_recipe_and_waits_until_deployable(fleet: Fleet) -> None:
    recipe = render_inference_recipe(TEMPLATE, "1.0.7", {"cpu": CPU}, MODEL)
    fleet.gg.add_response("create_component_version", _created("REQUESTED"), {"inlineRecipe": recipe.encode()})
    for state in ("INITIATED", "DEPLOYABLE"):
        fleet.gg.add_response("describe_component", {"status": {"componentState": state}}, {"arn": inference_arn("1.0.7")})
    sleeps: list[float] = []

    published = publish_component(_aws(fleet), recipe, poll_s=2.0, sleep=sleeps.append, clock=lambda: 0.0)

    assert (published.version, published.arn) == ("1.0.7", inference_arn("1.0.7"))
    assert sleeps == [2.0, 2.0]
    fleet.gg.assert_no_pending_responses()


def test_a_version_greengrass_fails_is_reported_with_its_reasons(fleet: Fleet) -> None:
    recipe = render_inference_recipe(TEMPLATE, "1.0.7", {"cpu": CPU}, MODEL)
    fleet.gg.add_response("create_component_version", _created("REQUESTED"), {"inlineRecipe": recipe.encode()})
    fleet.gg.add_response("describe_component", {"status": {
        "componentState": "FAILED", "message": "The recipe is not valid",
        "errors": {"docker:...": "image not found in registry"}}}, {"arn": inference_arn("1.0.7")})

    with pytest.raises(ComponentRejected, match="The recipe is not valid docker:...: image not found in registry"):
        publish_component(_aws(fleet), recipe, sleep=lambda s: None)
