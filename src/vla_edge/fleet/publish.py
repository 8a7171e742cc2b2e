"""``vla-edge model publish``: a model directory to a fleet in one command.

Full rollout (the default): manifest -> ``docker buildx build`` of the inference image with the
model baked in -> push to ECR -> inference component version pinned to the pushed digest
and recording the model -> deployment to the thing group. Model-only rollout
(``model_only``): manifest -> model files to S3 -> deployment that points the
model-updater's configuration at them (same component versions, no image, no restart).

Without a Docker engine the docker commands are printed and the flow stops before
anything depends on the image (:attr:`PublishResult.next_steps` says how to go on).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from platform import machine
from pathlib import Path
from typing import Any

from vla_edge.fleet.aws import Aws
from vla_edge.fleet.components import (
    INFERENCE,
    MODEL_UPDATER,
    NEXT_PATCH,
    PublishedComponent,
    default_recipe_path,
    model_label,
    publish_component,
    render_inference_recipe,
    resolve_version,
)
from vla_edge.fleet.deployments import (
    RolloutSettings,
    configuration_merge,
    create_deployment,
    latest_deployment,
    plan_deployment,
    thing_group_arn,
)
from vla_edge.fleet.docker import DockerCli, dockerfile_for
from vla_edge.fleet.ecr import (
    PushedImage,
    default_repository,
    ensure_repository,
    push_image,
)
from vla_edge.fleet.errors import FleetError
from vla_edge.messages import ModelRef

log = logging.getLogger(__name__)


@dataclass
class PublishOptions:
    model_dir: Path
    thing_group: str
    variants: list[str] = field(default_factory=lambda: ["cpu"])
    """Images to build, one per variant; the component version runs each on its manifests' devices."""
    repository: str | None = None
    image_tag: str | None = None
    component_version: str = NEXT_PATCH
    dockerfile: str | None = None
    context: Path = Path(".")
    platform: str | None = None
    build_args: list[str] = field(default_factory=list)
    recipe: Path | None = None
    settings: RolloutSettings = field(default_factory=RolloutSettings)
    model_name: str | None = None
    model_version: str | None = None
    immutable_tags: bool = False
    scan_on_push: bool = True
    deployment_name: str | None = None
    model_only: bool = False
    bucket: str | None = None
    prefix: str = "models"


@dataclass
class PublishResult:
    model: ModelRef
    images: dict[str, PushedImage] = field(default_factory=dict)
    component: PublishedComponent | None = None
    deployment: dict[str, Any] | None = None
    model_url: str | None = None
    next_steps: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model.model_dump(),
            "images": {variant: {"uri": f"{image.repository.uri}:{image.tag}", "digest": image.digest}
                       for variant, image in self.images.items()},
            "component": None if self.component is None else self.component.__dict__,
            "deploymentId": None if self.deployment is None else self.deployment.get("deploymentId"),
            "modelUrl": self.model_url,
            "nextSteps": self.next_steps,
        }


def default_tag(model: ModelRef) -> str:
    """``NAME-VERSION`` as an image tag: a tag says which model the image carries."""
    tag = f"{model.name}-{model.version}".replace("+", "_")
    return tag[:128]


def model_source(model_dir: Path, context: Path) -> str:
    """The model directory relative to the build context (the Dockerfile's MODEL_SOURCE)."""
    try:
        return model_dir.resolve().relative_to(context.resolve()).as_posix()
    except ValueError as exc:
        raise FleetError(f"the model {model_dir} is outside the docker build context {context}: docker can only "
                         "copy files inside the context; move the model under it or pass --context") from exc


def default_dockerfile(context: Path, variant: str) -> str:
    """docker/inference/Dockerfile.VARIANT of the build context (the repository root)."""
    relative = dockerfile_for(variant)
    return relative if context == Path(".") else str(context / relative)


def describe_model(options: PublishOptions, write: bool) -> tuple[ModelRef, Any]:
    """Build (and unless ``write`` is False, write) the model's manifest; the device checks downloads against it."""
    from vla_edge.errors import ModelUpdateError
    from vla_edge.updater.manifest import build_manifest, write_manifest

    try:
        manifest = build_manifest(options.model_dir, name=options.model_name, version=options.model_version)
        if write:
            write_manifest(manifest, options.model_dir)
    except ModelUpdateError as exc:
        raise FleetError(str(exc)) from exc
    return manifest.ref, manifest


GREENGRASS_ARCHITECTURES = {"linux/amd64": "amd64", "linux/arm64": "aarch64"}
"""Docker platform -> the ``architecture`` of a Greengrass recipe manifest."""


def image_platform(variant: str, requested: str | None) -> str:
    """The one platform an image is built for (``--load`` keeps one): ``--platform``, else
    ``linux/arm64`` for a Jetson, else this machine's, named explicitly so the recipe can say
    which devices the image serves."""
    if requested:
        return requested
    if variant == "jetson":
        return "linux/arm64"
    return "linux/arm64" if machine().lower() in ("aarch64", "arm64") else "linux/amd64"


def publish_model(aws: Aws, docker: DockerCli, options: PublishOptions) -> PublishResult:
    """Run the whole flow (see the module docstring); returns what was made, or the steps left to the user."""
    model, manifest = describe_model(options, write=not aws.dry_run)
    log.info("model %s", model_label(model))
    if options.model_only:
        return _publish_model_only(aws, options, model, manifest)
    if len(options.variants) > 1 and (options.repository or options.dockerfile or options.platform):
        raise FleetError("--repository, --dockerfile and --platform name one image: give one --variant with them")
    result = PublishResult(model)
    tag = options.image_tag or default_tag(model)
    source = model_source(options.model_dir, options.context)
    if aws.dry_run:
        docker.out.write("docker commands (dry run: printed, not run):\n")
    elif not docker.engine_available():
        docker.out.write("no Docker engine answers here; run these commands where one does:\n")
    architectures: dict[str, str] = {}
    for variant in options.variants:
        local = f"vla-edge-inference-{variant}:{tag}"
        platform = image_platform(variant, options.platform)
        if platform in GREENGRASS_ARCHITECTURES:
            architectures[variant] = GREENGRASS_ARCHITECTURES[platform]
        docker.build(local, source, options.dockerfile or default_dockerfile(options.context, variant),
                     str(options.context), platform, options.build_args)
        repository = ensure_repository(aws, options.repository or default_repository(variant),
                                       options.scan_on_push, options.immutable_tags)
        result.images[variant] = push_image(aws, docker, local, repository, tag)
    if any(image.digest is None for image in result.images.values()):
        pushed = " ".join(f"--image {variant}={image.repository.uri}:{tag}" for variant, image in result.images.items())
        result.next_steps = [
            (f"vla-edge fleet publish {pushed} --model-dir {options.model_dir} "
             f"--component-version {options.component_version}"),
            (f"vla-edge fleet deploy --thing-group {options.thing_group} --component {INFERENCE}=VERSION "
             "(the version the publish step printed)"),
        ]
        return result
    pinned = {variant: image.pinned for variant, image in result.images.items()}
    result.component = publish_inference(aws, pinned, model, options.component_version, options.recipe,
                                         architectures)
    request = plan_deployment(aws, options.thing_group, {INFERENCE: {"componentVersion": result.component.version}},
                              options.settings, options.deployment_name)
    result.deployment = create_deployment(aws, request)
    return result


def publish_inference(aws: Aws, images: dict[str, str], model: ModelRef | None, requested: str = NEXT_PATCH,
                      recipe: Path | None = None, architectures: dict[str, str] | None = None) -> PublishedComponent:
    """A new com.vlaedge.Inference version running ``images`` (variant -> ``REPO@sha256:...``), recording ``model``."""
    import yaml

    path = recipe or default_recipe_path()
    try:
        template = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise FleetError(f"cannot read the inference recipe {path}: {exc}; pass --recipe") from exc
    first = str((yaml.safe_load(template) or {}).get("ComponentVersion", "1.0.0"))
    version = resolve_version(aws, INFERENCE, requested, first)
    return publish_component(aws, render_inference_recipe(template, version, images, model, architectures))


def _publish_model_only(aws: Aws, options: PublishOptions, model: ModelRef, manifest: Any) -> PublishResult:
    from vla_edge.fleet.s3 import upload_model

    if not options.bucket:
        raise FleetError("--model-only needs --bucket: the model-updater downloads the model from S3")
    target = thing_group_arn(aws, options.thing_group)
    previous = latest_deployment(aws, target)
    running = (previous or {}).get("components", {}).get(MODEL_UPDATER)
    if running is None:
        raise FleetError(f"{MODEL_UPDATER} is not a component of {options.thing_group}'s deployment (a dependency of "
                         "another component, e.g. com.vlaedge.Suite, cannot be configured on its own); a model-only "
                         f"rollout changes its configuration, so deploy it first: vla-edge fleet deploy --thing-group "
                         f"{options.thing_group} --component {MODEL_UPDATER}=VERSION")
    uploaded = upload_model(aws, options.model_dir, manifest, options.bucket, options.prefix)
    desired = {"model": {"source": "s3", "bucket": uploaded.bucket, "prefix": uploaded.prefix,
                         "region": aws.resolved_region()}}
    update = {"componentVersion": running["componentVersion"], "configurationUpdate": configuration_merge(desired)}
    name = options.deployment_name or f"vla-edge {options.thing_group}: model {model.name} {model.version}"
    request = plan_deployment(aws, options.thing_group, {MODEL_UPDATER: update}, options.settings, name,
                              target_arn=target, previous=previous or {})
    return PublishResult(model, model_url=uploaded.url, deployment=create_deployment(aws, request))

