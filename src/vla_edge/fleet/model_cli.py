"""``vla-edge model publish``: the parser and the command, called from :mod:`vla_edge.updater.cli`.

Lives here, beside ``vla-edge fleet``, because it is that command's flow in one step and
shares its AWS and rollout flags.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from vla_edge.fleet.cli import (
    EXIT_FAILED,
    EXIT_MANUAL,
    ROLLOUT_EPILOG,
    Runtime,
    UsageError,
    add_aws_flags,
    add_rollout_flags,
    add_watch_flags,
    check_component_version,
    docker_cli,
    rollout_settings,
)

DESCRIPTION = """\
Ship a LeRobot policy directory to every robot of a thing group in one command:
  1. write its manifest (files, sha256, features, memory: vla-edge model manifest)
  2. docker build the inference image with the model baked in (--dockerfile, --context)
  3. push it to ECR (repository created with scan on push if missing)
  4. publish a com.vlaedge.Inference version pinned to the image digest, recording the model
  5. deploy it to the thing group (keeping the group's other components), then watch the rollout
Without a Docker engine the docker commands are printed, with what to run after them (exit 3).

--model-only skips the image: the files go to S3 (--bucket) and the deployment points the
model-updater at them; the updater verifies, stages and switches the model between ticks,
with a probation and its own rollback, and no component restarts.
"""

NOTIFY_HELP = (
    "SKIP_NOTIFY_COMPONENTS. Default for a full rollout: NOTIFY_COMPONENTS, because a new image restarts the "
    "inference container and the notification lets the model-updater defer that restart while the arm executes a "
    "plan; skip it only for robots that are idle. --model-only restarts nothing and skips the notification by "
    "default (--notify to keep it)"
)


def add_publish_parser(commands: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = commands.add_parser(
        "publish", help="build, push, publish and deploy a model to a thing group in one command",
        description=DESCRIPTION, epilog=ROLLOUT_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir", type=Path, metavar="MODEL_DIR", help="directory written by save_pretrained()")
    parser.add_argument("--thing-group", required=True, metavar="NAME", help="IoT thing group of the robots' core devices")
    parser.add_argument("--name", help="model name (default: vla_edge_model.json's, else the directory name)")
    parser.add_argument("--version", help="model version (default: vla_edge_model.json's; required otherwise)")
    image = parser.add_argument_group("image")
    image.add_argument("--variant", choices=("cpu", "cuda", "jetson"), action="append", metavar="VARIANT",
                       help="image variant to build: cpu (default), cuda (x86_64 NVIDIA GPUs) or jetson (L4T arm64); "
                       "picks the Dockerfile, the repository and the recipe's manifests the image serves. The image "
                       "is built for one platform (--platform, linux/arm64 for jetson, else this machine's) and only "
                       "the manifests of that architecture take it. Repeat for a group of mixed devices. Manifests "
                       "without an image are left out: a GPU device then runs the CPU image of its architecture on "
                       "its CPU, and a device with no manifest left fails the deployment and rolls back")
    image.add_argument("--repository", help="ECR repository (default vla-edge/inference-VARIANT)")
    image.add_argument("--image-tag", metavar="TAG", help="tag (default: MODEL_NAME-MODEL_VERSION)")
    image.add_argument("--dockerfile", metavar="FILE", help="default: docker/inference/Dockerfile.VARIANT in the context")
    image.add_argument("--context", type=Path, default=Path("."), metavar="DIR",
                       help="docker build context: the repository root, which must contain MODEL_DIR (default: the "
                       "current directory)")
    image.add_argument("--platform", metavar="OS/ARCH", help="target platform (default: linux/arm64 for jetson, else the host's)")
    image.add_argument("--build-arg", action="append", default=[], metavar="KEY=VALUE", help="extra docker build argument")
    image.add_argument("--immutable-tags", action="store_true", help="create the repository with immutable tags")
    image.add_argument("--no-scan-on-push", action="store_true", help="create the repository without scan on push")
    image.add_argument("--docker", default="docker", metavar="BIN", help="docker binary (default: docker)")
    component = parser.add_argument_group("component")
    component.add_argument("--component-version", default="NEXT_PATCH", metavar="VERSION",
                           help="com.vlaedge.Inference version: MAJOR.MINOR.PATCH or NEXT_PATCH (default)")
    component.add_argument("--recipe", type=Path, metavar="FILE",
                           help="recipe template (default components/inference/recipe.yaml)")
    model_only = parser.add_argument_group("model-only rollout")
    model_only.add_argument("--model-only", action="store_true",
                            help="no new image: upload to S3 and point the model-updater at it")
    model_only.add_argument("--bucket", help="S3 bucket for --model-only (the device role needs s3:GetObject on it)")
    model_only.add_argument("--prefix", default="models", help="key prefix; files go to PREFIX/NAME/VERSION/ (default models)")
    model_only.add_argument("--notify", action="store_true", help="NOTIFY_COMPONENTS for a --model-only rollout too")
    add_rollout_flags(parser, NOTIFY_HELP)
    parser.add_argument("--no-watch", action="store_true", help="return once the deployment is created")
    add_watch_flags(parser)
    add_aws_flags(parser)
    return parser


def run_publish(args: argparse.Namespace, aws: Any, runtime: Runtime) -> int:
    """``vla-edge model publish``: the flow of :func:`vla_edge.fleet.publish.publish_model`, then watch."""
    from vla_edge.fleet.components import model_label
    from vla_edge.fleet.publish import PublishOptions, publish_model
    from vla_edge.fleet.watch import watch_deployment

    check_component_version(args.component_version)
    if args.model_only:
        if not args.bucket:
            raise UsageError("--model-only needs --bucket: the model-updater downloads the model from S3")
        notify = args.notify and not args.skip_notify
    else:
        notify = not args.skip_notify
    options = PublishOptions(
        model_dir=args.model_dir, thing_group=args.thing_group, variants=list(dict.fromkeys(args.variant or ["cpu"])),
        repository=args.repository,
        image_tag=args.image_tag,
        component_version=args.component_version, dockerfile=args.dockerfile, context=args.context,
        platform=args.platform, build_args=args.build_arg, recipe=args.recipe,
        settings=rollout_settings(args, notify), model_name=args.name, model_version=args.version,
        immutable_tags=args.immutable_tags, scan_on_push=not args.no_scan_on_push,
        deployment_name=args.deployment_name, model_only=args.model_only, bucket=args.bucket, prefix=args.prefix,
    )
    out = (runtime.stderr or sys.stderr) if args.json else aws.out  # with --json, stdout holds the JSON only
    result = publish_model(aws, docker_cli(args, aws, runtime), options)
    if result.next_steps:
        out.write("then:\n" + "".join(f"  {step}\n" for step in result.next_steps))
        if args.json:
            aws.out.write(json.dumps(result.to_json(), indent=2) + "\n")
        return EXIT_MANUAL
    if result.component is not None:
        images = ", ".join(image.pinned for image in result.images.values())
        out.write(f"{result.component.name} {result.component.version}: {images} with {model_label(result.model)}\n")
    if result.model_url:
        out.write(f"model {model_label(result.model)} uploaded to {result.model_url}\n")
    assert result.deployment is not None
    deployment_id = result.deployment["deploymentId"]
    out.write(f"deployment {deployment_id} created for {args.thing_group}\n")
    summary = result.to_json()
    code = 0
    if args.no_watch or aws.dry_run:
        if not aws.dry_run:
            out.write(f"follow it with: vla-edge fleet watch {deployment_id}\n")
    else:
        watched = watch_deployment(aws, deployment_id, out, args.poll, args.timeout or None, runtime.clock,
                                   runtime.sleep)
        summary["watch"] = watched.to_json()
        code = 0 if watched.ok else EXIT_FAILED
    if args.json:
        aws.out.write(json.dumps(summary, indent=2) + "\n")
    return code
