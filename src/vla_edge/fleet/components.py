"""Component versions: the inference recipe pinned to an image digest and a model, published to Greengrass.

Why the recipe records the model: a device reports component versions, not models. The
inference version's recipe names the model baked into its image (in the description, as
``[vla-edge-model name=... version=... sha256=...]``, since the component's configuration
rejects unknown keys), so ``vla-edge fleet devices`` can map each device's inference
version to the model it runs by reading that version's recipe back.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from vla_edge.fleet.aws import Aws
from vla_edge.fleet.errors import ComponentRejected, FleetError, NotFound
from vla_edge.messages import ModelRef

log = logging.getLogger(__name__)

INFERENCE = "com.vlaedge.Inference"
MODEL_UPDATER = "com.vlaedge.ModelUpdater"
NEXT_PATCH = "NEXT_PATCH"
DEFAULT_RECIPE = "components/inference/recipe.yaml"
_SEMVER = re.compile(r"^(\d+)\.(\d+)\.(\d+)$")
_MODEL_MARK = re.compile(r"\[vla-edge-model name=(\S+) version=(\S+) sha256=([0-9a-f]{64})\]")


def model_mark(model: ModelRef) -> str:
    """How a component version's recipe records the model baked into its image (read back by :func:`model_of_recipe`)."""
    return f"[vla-edge-model name={model.name} version={model.version} sha256={model.sha256}]"


def model_label(model: ModelRef) -> str:
    return f"{model.name} {model.version} (sha256 {model.sha256[:12]})"


def component_arn(region: str, account: str, name: str, version: str | None = None) -> str:
    arn = f"arn:aws:greengrass:{region}:{account}:components:{name}"
    return f"{arn}:versions:{version}" if version else arn


def default_recipe_path() -> Path:
    """components/inference/recipe.yaml of the current directory, else of this source checkout."""
    here = Path(DEFAULT_RECIPE)
    if here.is_file():
        return here
    return Path(__file__).resolve().parents[3] / DEFAULT_RECIPE


def check_version(version: str) -> str:
    if not _SEMVER.match(version):
        raise FleetError(f"component version {version!r} is not MAJOR.MINOR.PATCH (or NEXT_PATCH)")
    return version


def resolve_version(aws: Aws, name: str, requested: str, first: str) -> str:
    """``requested`` itself, or for NEXT_PATCH the newest published version's patch + 1 (``first`` if none)."""
    if requested != NEXT_PATCH:
        return check_version(requested)
    arn = component_arn(aws.resolved_region(), aws.account_id(), name)
    versions: list[tuple[int, int, int]] = []
    token: str | None = None
    try:
        while True:
            page = aws.client("greengrassv2").list_component_versions(arn=arn, **({"nextToken": token} if token else {}))
            for entry in page.get("componentVersions", []):
                match = _SEMVER.match(entry.get("componentVersion", ""))
                if match:
                    versions.append((int(match[1]), int(match[2]), int(match[3])))
            token = page.get("nextToken")
            if not token:
                break
    except NotFound:
        versions = []
    if not versions:
        log.info("%s has no published version yet: starting at %s", name, first)
        return check_version(first)
    major, minor, patch = max(versions)
    return f"{major}.{minor}.{patch + 1}"


VARIANTS = ("cpu", "cuda", "jetson")
_VARIANT_IMAGE = re.compile(r"/vla-edge/inference-([a-z]+)@")


def variant_of(reference: str) -> str | None:
    """The image variant a reference names (``.../vla-edge/inference-cuda@...`` -> ``cuda``), if any."""
    match = _VARIANT_IMAGE.search(reference)
    return match[1] if match and match[1] in VARIANTS else None


def render_inference_recipe(template: str, version: str, images: dict[str, str], model: ModelRef | None,
                            architectures: dict[str, str] | None = None) -> str:
    """The inference recipe at ``version`` running the pushed ``images``, recording ``model``.

    ``images`` maps an image variant (``cpu``, ``cuda``, ``jetson``: the suffix of the
    template's placeholder repository ``vla-edge/inference-<variant>``) to ``REPO@sha256:...``.
    In each manifest, the ``docker:`` artifact and every mention of its image in the lifecycle
    (the ``docker run`` line, or the ``VLA_EDGE_IMAGE`` it reads) become the pushed image, so
    the image Greengrass pulls is the one that runs. A manifest whose variant has no image is
    left out, and so is a manifest for another architecture than the one its variant's image was
    built for (``architectures``: variant -> Greengrass architecture, e.g. ``amd64``; an image built
    with ``--load`` has one platform). Greengrass runs the first manifest that matches a device, so
    a GPU device whose GPU manifest is left out runs a CPU manifest of its architecture (the policy
    on the CPU); a device with no manifest left fails the deployment and rolls back, instead of
    pulling an image it cannot run. A template that names no variant takes the one image given.
    """
    import yaml

    for reference in images.values():
        if "@sha256:" not in reference:
            raise FleetError(f"{reference} is not pinned by digest (REPO@sha256:...); publish only pushed images")
    recipe = yaml.safe_load(template)
    if not isinstance(recipe, dict) or not recipe.get("Manifests"):
        raise FleetError("the recipe template has no Manifests; pass the inference recipe (--recipe)")
    recipe["ComponentVersion"] = version
    kept = []
    for manifest in recipe["Manifests"]:
        olds = [str(a.get("URI", ""))[len("docker:"):] for a in manifest.get("Artifacts") or []
                if str(a.get("URI", "")).startswith("docker:")]
        if not olds:
            kept.append(manifest)
            continue
        mapping = {}
        for old in olds:
            variant = variant_of(old)
            if variant is None and len(images) == 1:
                mapping[old] = next(iter(images.values()))
            elif variant in images:
                mapping[old] = images[variant]
        name = manifest.get("Name") or manifest.get("Platform")
        if len(mapping) < len(olds):
            log.info("leaving out the manifest %s: no image for it", name)
            continue
        wanted = (manifest.get("Platform") or {}).get("architecture")
        built_for = {variant: (architectures or {}).get(variant or "") for variant in map(variant_of, olds)}
        mismatched = {variant: arch for variant, arch in built_for.items() if wanted and arch and arch != wanted}
        for variant, arch in mismatched.items():
            log.warning("leaving out the manifest %s: the %s image was built for %s only; build it for %s too "
                        "(on such a machine, or --platform linux/%s with --variant %s) to serve those devices",
                        name, variant or "given", arch, wanted, "arm64" if wanted == "aarch64" else wanted,
                        variant or "cpu")
        if mismatched:
            continue
        for old, new in mapping.items():
            found = [False]
            manifest["Lifecycle"] = _replace_strings(manifest.get("Lifecycle", {}), old, new, found)
            if not found[0]:
                raise FleetError(f"the recipe's lifecycle never runs its artifact image {old}; fix the template")
            for artifact in manifest["Artifacts"]:
                if artifact.get("URI") == f"docker:{old}":
                    artifact["URI"] = f"docker:{new}"
        kept.append(manifest)
    if not any(a for m in kept for a in m.get("Artifacts") or [] if str(a.get("URI", "")).startswith("docker:")):
        wanted = sorted({variant_of(str(a.get("URI", ""))) or "?" for m in recipe["Manifests"]
                         for a in m.get("Artifacts") or []})
        raise FleetError(f"no manifest of the recipe takes the image(s) given ({', '.join(sorted(images))}); "
                         f"it has image variants {', '.join(wanted)}")
    recipe["Manifests"] = kept
    description = _MODEL_MARK.sub("", str(recipe.get("ComponentDescription", ""))).strip()
    if model is not None:
        description = f"{description} Image model: {model_mark(model)}".strip()
    recipe["ComponentDescription"] = description
    return yaml.safe_dump(recipe, sort_keys=False, width=1_000_000)


def _replace_strings(value: Any, old: str, new: str, found: list[bool]) -> Any:
    if isinstance(value, str):
        if old in value:
            found[0] = True
        return value.replace(old, new)
    if isinstance(value, dict):
        return {k: _replace_strings(v, old, new, found) for k, v in value.items()}
    if isinstance(value, list):
        return [_replace_strings(v, old, new, found) for v in value]
    return value


def model_of_recipe(recipe: str | bytes) -> ModelRef | None:
    """The model recorded in a recipe (YAML or JSON text), None when it records none."""
    import yaml

    data = yaml.safe_load(recipe)
    match = _MODEL_MARK.search(str((data or {}).get("ComponentDescription", "")))
    if not match:
        return None
    try:
        return ModelRef(name=match[1], version=match[2], sha256=match[3])
    except ValidationError as exc:
        log.warning("the recipe records a model that is not a valid model reference (%s): %s", match[0], exc)
        return None


@dataclass(frozen=True)
class PublishedComponent:
    name: str
    version: str
    arn: str


def publish_component(
    aws: Aws,
    recipe: str,
    timeout_s: float = 300.0,
    poll_s: float = 5.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> PublishedComponent:
    """``create_component_version`` with the inline recipe, then wait until Greengrass calls it DEPLOYABLE.

    Greengrass checks the recipe and its artifacts after accepting the call; a version that
    ends FAILED (bad recipe, unreachable artifact) is reported with Greengrass's reasons.
    """
    gg = aws.client("greengrassv2")
    created = gg.create_component_version(inlineRecipe=recipe.encode("utf-8"))
    name, version, arn = created["componentName"], created["componentVersion"], created["arn"]
    status = created.get("status", {})
    deadline = clock() + timeout_s
    while status.get("componentState") not in ("DEPLOYABLE", "FAILED"):
        if clock() >= deadline:
            raise FleetError(f"{name} {version} is still {status.get('componentState')} after {timeout_s:.0f} s; "
                             f"check it with `aws greengrassv2 describe-component --arn {arn}`")
        sleep(poll_s)
        status = gg.describe_component(arn=arn).get("status", {})
    if status["componentState"] == "FAILED":
        errors = "; ".join(f"{k}: {v}" for k, v in (status.get("errors") or {}).items())
        raise ComponentRejected(f"Greengrass rejected {name} {version}: {status.get('message', '')} {errors}".strip())
    log.info("%s %s is deployable (%s)", name, version, arn)
    return PublishedComponent(name, version, arn)


def recipe_model(aws: Aws, arn: str) -> ModelRef | None:
    """The model recorded in the recipe of the component version ``arn``."""
    recipe = aws.client("greengrassv2").get_component(arn=arn, recipeOutputFormat="YAML")["recipe"]
    return model_of_recipe(recipe)
