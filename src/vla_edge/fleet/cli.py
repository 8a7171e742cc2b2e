"""``vla-edge fleet``: push an inference image, publish component versions, deploy to a thing group, watch, list devices.

Exit codes: 0 done (for ``deploy --watch`` and ``watch``: every device succeeded), 1 an
AWS or docker step failed (one line on stderr says why and what to do), 2 bad arguments,
3 no Docker engine: the docker commands were printed, nothing was pushed.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn, TextIO

from vla_edge.errors import VlaEdgeError

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_MANUAL = 3

ROLLOUT_EPILOG = """\
rollout defaults (each has a flag above):
  5 devices a minute at first, x2 after every 5 devices that succeeded (exponential rollout);
  the rollout is canceled once 10 % of at least 5 finished devices failed (any failure type);
  a device still in progress after 60 minutes counts as timed out;
  a device whose deployment fails rolls back to the components it ran before (ROLLBACK);
  components are notified before they restart and may defer for up to 120 s at a time
  (NOTIFY_COMPONENTS: the model-updater defers while the arm executes a plan).
"""


class UsageError(Exception):
    """argparse's complaint, as one line and exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}")


@dataclass
class Runtime:
    """What the commands reach outside this process; tests pass moto/Stubber clients and a docker runner."""

    clients: dict[str, Any] = field(default_factory=dict)
    docker_runner: Callable[..., Any] | None = None
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    stdout: TextIO | None = None
    stderr: TextIO | None = None


def add_aws_flags(parser: argparse.ArgumentParser, json_flag: bool = True) -> None:
    group = parser.add_argument_group("AWS")
    group.add_argument("--region", help="AWS region (default: the profile's, or AWS_REGION)")
    group.add_argument("--profile", help="named AWS profile (default: the default credential chain)")
    group.add_argument("--dry-run", action="store_true",
                       help="print every AWS call (and docker command) with its parameters instead of making it; "
                            "needs no credentials")
    if json_flag:
        group.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    group.add_argument("-q", "--quiet", action="store_true", help="log warnings only")


def add_rollout_flags(parser: argparse.ArgumentParser, notify_help: str | None = None) -> None:
    group = parser.add_argument_group("rollout (see the defaults below)")
    group.add_argument("--rollout-rate", type=int, default=5, metavar="N",
                       help="devices a minute the deployment starts on at first (default 5)")
    group.add_argument("--rollout-increment", type=float, default=2.0, metavar="F",
                       help="factor the rate grows by (default 2)")
    group.add_argument("--rollout-increase-after", type=int, default=5, metavar="N",
                       help="devices that must succeed before the rate grows (default 5)")
    group.add_argument("--rollout-max-rate", type=int, metavar="N", help="never more devices a minute than this")
    group.add_argument("--abort-threshold", type=float, default=10.0, metavar="PCT",
                       help="cancel the rollout when this %% of finished devices failed (default 10)")
    group.add_argument("--abort-min-devices", type=int, default=5, metavar="N",
                       help="devices that must have finished before the threshold applies (default 5)")
    group.add_argument("--abort-on", choices=("ALL", "FAILED", "REJECTED", "TIMED_OUT"), default="ALL",
                       help="which failures count toward the threshold (default ALL)")
    group.add_argument("--device-timeout", type=int, default=60, metavar="MIN",
                       help="minutes a device may stay in progress before it counts as timed out (default 60)")
    group.add_argument("--failure-handling", choices=("ROLLBACK", "DO_NOTHING"), default="ROLLBACK",
                       help="what a device does when its deployment fails (default ROLLBACK: back to its previous "
                            "components and configuration)")
    group.add_argument("--skip-notify", action="store_true", help=notify_help or (
        "SKIP_NOTIFY_COMPONENTS: do not let components defer the update (for configuration or model-only "
        "rollouts that restart nothing); default NOTIFY_COMPONENTS"))
    group.add_argument("--notify-timeout", type=int, default=120, metavar="S",
                       help="seconds a notified component may take to answer, per deferral (default 120)")
    group.add_argument("--validation-timeout", type=int, default=30, metavar="S",
                       help="seconds components get to validate a configuration update (default 30)")
    group.add_argument("--deployment-name", metavar="NAME", help="deployment name (default: group and versions)")


def rollout_settings(args: argparse.Namespace, notify: bool | None = None) -> Any:
    from vla_edge.fleet.deployments import RolloutSettings
    from vla_edge.fleet.errors import FleetError

    settings = RolloutSettings(
        base_rate_per_minute=args.rollout_rate,
        increment_factor=args.rollout_increment,
        rate_increase_after_succeeded=args.rollout_increase_after,
        maximum_per_minute=args.rollout_max_rate,
        abort_failure_type=args.abort_on,
        abort_threshold_percent=args.abort_threshold,
        abort_min_executed=args.abort_min_devices,
        in_progress_timeout_minutes=args.device_timeout,
        failure_handling=args.failure_handling,
        notify_components=(not args.skip_notify) if notify is None else notify,
        notify_timeout_s=args.notify_timeout,
        config_validation_timeout_s=args.validation_timeout,
    )
    try:
        return settings.check()
    except FleetError as exc:
        raise UsageError(str(exc)) from exc


def check_component_version(version: str) -> str:
    """NEXT_PATCH or MAJOR.MINOR.PATCH, else a usage error (exit 2)."""
    from vla_edge.fleet.components import NEXT_PATCH, check_version
    from vla_edge.fleet.errors import FleetError

    try:
        return version if version == NEXT_PATCH else check_version(version)
    except FleetError as exc:
        raise UsageError(str(exc)) from exc


def add_watch_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("watching")
    group.add_argument("--poll", type=float, default=10.0, metavar="S", help="seconds between polls (default 10)")
    group.add_argument("--timeout", type=float, default=3 * 3600.0, metavar="S",
                       help="stop watching after this long; the rollout goes on (default 10800 = 3 h)")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="vla-edge fleet", description=(
        "Roll inference images and models out to Greengrass core devices: push an image to ECR, publish "
        "com.vlaedge.Inference versions pinned to its digest, deploy to a thing group with a staged rollout and "
        "automatic rollback, watch it, and list what each device runs. `vla-edge model publish` does all of it "
        "in one command."),
        epilog="exit codes: 0 done (deploy --watch, watch: every device succeeded), 1 a step failed, 2 bad "
        "arguments, 3 no Docker engine (the docker commands were printed). Guide: docs/fleet.md; permissions: "
        "docs/iam.md.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=_Parser)

    push = commands.add_parser("push-image", help="push a local docker image to ECR and print its digest",
                               description="Tag IMAGE into the ECR repository (created with scan on push if "
                               "missing), log in with ecr:GetAuthorizationToken and push; prints REPO@sha256:... "
                               "Without a Docker engine, prints the docker commands instead (exit 3).")
    push.add_argument("image", metavar="IMAGE", help="local image, e.g. vla-edge-inference:act-1.2")
    push.add_argument("--variant", choices=("cpu", "cuda", "jetson"), default="cpu",
                      help="image variant (default cpu); names the default repository")
    push.add_argument("--repository", help="ECR repository (default vla-edge/inference-VARIANT)")
    push.add_argument("--tag", help="tag in ECR (default: IMAGE's tag)")
    _repository_flags(push)
    add_aws_flags(push)

    publish = commands.add_parser("publish", help="publish a com.vlaedge.Inference version pinned to an image digest",
                                  description="Render components/inference/recipe.yaml with each image pinned by "
                                  "digest (in the docker: artifact and in what docker run starts) and the model it "
                                  "carries, create the component version and wait until Greengrass calls it DEPLOYABLE.")
    publish.add_argument("--image", required=True, action="append", metavar="[VARIANT=]URI[:TAG|@DIGEST]",
                         help="a pushed image; a tag is resolved to its digest in ECR. VARIANT (cpu, cuda, jetson; "
                         "default: from the repository name vla-edge/inference-VARIANT, else cpu) picks the recipe's "
                         "manifests it serves; repeat for each variant (manifests without an image are left out)")
    publish.add_argument("--model-dir", type=Path, metavar="DIR",
                         help="the model baked into the image (its vla_edge_manifest.json names it in the recipe)")
    publish.add_argument("--component-version", default="NEXT_PATCH", metavar="VERSION",
                         help="MAJOR.MINOR.PATCH, or NEXT_PATCH (default): the newest published version + 1")
    publish.add_argument("--recipe", type=Path, metavar="FILE", help="recipe template (default components/inference/recipe.yaml)")
    add_aws_flags(publish)

    deploy = commands.add_parser(
        "deploy", help="deploy component versions to a thing group (staged rollout, abort, rollback)",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=ROLLOUT_EPILOG,
        description="Deploy to every core device of a thing group. The group's current components (from its\n"
        "latest deployment) are kept and only the components named here change: a thing-group deployment\n"
        "replaces the previous one, so a component left out would be removed from the devices.")
    deploy.add_argument("--thing-group", required=True, metavar="NAME", help="the IoT thing group of core devices")
    deploy.add_argument("--component", action="append", required=True, metavar="NAME=VERSION",
                        help="component and version to deploy, e.g. com.vlaedge.Inference=1.0.4 (repeatable)")
    deploy.add_argument("--merge-config", action="append", default=[], metavar="NAME=JSON",
                        help="configuration to merge into a component, e.g. 'com.vlaedge.Inference={\"device\":\"cuda\"}'")
    deploy.add_argument("--replace", action="store_true",
                        help="deploy only the named components (removes the group's others from its devices)")
    deploy.add_argument("--watch", action="store_true", help="watch the rollout until every device finished")
    add_rollout_flags(deploy)
    add_watch_flags(deploy)
    add_aws_flags(deploy)

    watch = commands.add_parser("watch", help="follow a deployment until every device finished",
                                description="One progress line per poll (queued, in progress, succeeded, failed, "
                                "rejected, timed out), then each device's outcome and Greengrass's reason. Exit 0 "
                                "only when every device succeeded.")
    watch.add_argument("deployment_id", metavar="DEPLOYMENT_ID")
    add_watch_flags(watch)
    add_aws_flags(watch)

    devices = commands.add_parser("devices", help="which component and model version each device of a group reports",
                                  description="Per core device: status, last status update, the com.vlaedge.* "
                                  "component versions installed, and the model its inference version carries.")
    devices.add_argument("--thing-group", required=True, metavar="NAME")
    add_aws_flags(devices)
    return parser


def _repository_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--immutable-tags", action="store_true",
                        help="create the repository with immutable tags (an existing one is used as it is)")
    parser.add_argument("--no-scan-on-push", action="store_true", help="create the repository without scan on push")
    parser.add_argument("--docker", default="docker", metavar="BIN", help="docker binary (default: docker)")


def main(argv: Sequence[str] | None = None, runtime: Runtime | None = None) -> int:
    """Run ``vla-edge fleet ...`` with ``argv`` (without the ``fleet`` word); returns the exit code."""
    runtime = runtime or Runtime()
    stderr = runtime.stderr or sys.stderr
    try:
        args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    except UsageError as exc:
        stderr.write(f"{exc}\n")
        return EXIT_USAGE
    except SystemExit as exc:  # --help
        return int(exc.code or 0)
    return run_command(f"vla-edge fleet {args.command}", args, runtime, COMMANDS[args.command])


def run_command(prog: str, args: argparse.Namespace, runtime: Runtime,
                command: Callable[[argparse.Namespace, Any, Runtime], int]) -> int:
    """Set up logging and AWS, run ``command``, and turn errors into one line on stderr and an exit code."""
    from vla_edge.fleet.aws import Aws

    stdout, stderr = runtime.stdout or sys.stdout, runtime.stderr or sys.stderr
    _logging(stderr, args.quiet)
    aws = Aws(region=args.region, profile=args.profile, dry_run=args.dry_run, out=stdout, clients=dict(runtime.clients))
    try:
        return command(args, aws, runtime)
    except UsageError as exc:
        stderr.write(f"{prog}: {exc}\n")
        return EXIT_USAGE
    except VlaEdgeError as exc:
        stderr.write(f"{prog}: {exc}\n")
        return EXIT_FAILED


def _logging(stream: TextIO, quiet: bool) -> None:
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("vla_edge")
    logger.handlers = [h for h in logger.handlers if not getattr(h, "_vla_edge_fleet", False)]
    handler._vla_edge_fleet = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING if quiet else logging.INFO)


def docker_cli(args: argparse.Namespace, aws: Any, runtime: Runtime) -> Any:
    from vla_edge.fleet.docker import DockerCli

    docker = DockerCli(binary=getattr(args, "docker", "docker"), out=aws.out, print_only=aws.dry_run)
    if runtime.docker_runner is not None:
        docker.runner = runtime.docker_runner
    return docker


def _emit(args: argparse.Namespace, out: TextIO, data: dict[str, Any], text: str) -> None:
    out.write(json.dumps(data, indent=2, default=str) + "\n" if args.json else text)


def _push_image(args: argparse.Namespace, aws: Any, runtime: Runtime) -> int:
    from vla_edge.fleet.ecr import (
        default_repository,
        ensure_repository,
        parse_image,
        push_image,
    )

    docker = docker_cli(args, aws, runtime)
    _, local_tag, _ = parse_image(args.image)
    tag = args.tag or local_tag or "latest"
    if aws.dry_run:
        aws.out.write("docker commands (dry run: printed, not run):\n")
    elif not docker.engine_available():
        aws.out.write("no Docker engine answers here; run these commands where one does:\n")
    repository = ensure_repository(aws, args.repository or default_repository(args.variant), not args.no_scan_on_push,
                                   args.immutable_tags)
    image = push_image(aws, docker, args.image, repository, tag)
    if image.digest is None:
        aws.out.write(f"then: vla-edge fleet publish --image {args.variant}={repository.uri}:{tag} --model-dir DIR\n")
        return EXIT_MANUAL
    _emit(args, aws.out, {"image": image.pinned, "tag": tag}, f"{image.pinned}\n")
    return 0


def _publish(args: argparse.Namespace, aws: Any, runtime: Runtime) -> int:
    from vla_edge.fleet.components import VARIANTS
    from vla_edge.fleet.ecr import resolve_pinned
    from vla_edge.fleet.publish import publish_inference

    check_component_version(args.component_version)
    model = None
    if args.model_dir is not None:
        from vla_edge.updater.manifest import read_manifest

        model = read_manifest(args.model_dir).ref
    else:
        logging.getLogger(__name__).warning("no --model-dir: the component version will not record its model")
    images = {}
    for value in args.image:
        variant, sep, uri = value.partition("=")
        if not sep:
            variant, uri = image_variant(value), value
        if variant not in VARIANTS:
            raise UsageError(f"--image {value!r}: variant must be one of {', '.join(VARIANTS)}")
        images[variant] = resolve_pinned(aws, uri)
    component = publish_inference(aws, images, model, args.component_version, args.recipe)
    shown = ", ".join(f"{k} {v}" for k, v in sorted(images.items()))
    _emit(args, aws.out, {**component.__dict__, "images": images},
          f"{component.name} {component.version} is deployable ({shown})\n")
    return 0


def image_variant(uri: str) -> str:
    """``.../vla-edge/inference-cuda:tag`` -> ``cuda``; ``cpu`` when the repository names no variant."""
    import re

    match = re.search(r"inference-(cpu|cuda|jetson)(?:[:@]|$)", uri)
    return match[1] if match else "cpu"


def parse_components(values: Sequence[str], merges: Sequence[str] = ()) -> dict[str, dict[str, Any]]:
    from vla_edge.fleet.deployments import configuration_merge

    updates: dict[str, dict[str, Any]] = {}
    for value in values:
        name, sep, version = value.partition("=")
        if not sep or not name:
            raise UsageError(f"--component {value!r}: expected NAME=VERSION, e.g. com.vlaedge.Inference=1.0.4")
        if version == "NEXT_PATCH":
            raise UsageError(f"--component {value!r}: name the version to deploy (vla-edge fleet publish printed it)")
        updates[name] = {"componentVersion": check_component_version(version)}
    for value in merges:
        name, sep, text = value.partition("=")
        try:
            values_ = json.loads(text)
        except ValueError as exc:
            raise UsageError(f"--merge-config {value!r}: not NAME=JSON ({exc})") from exc
        if not sep or name not in updates or not isinstance(values_, dict):
            raise UsageError(f"--merge-config {value!r}: expected NAME=JSON-object for a component given with --component")
        updates[name]["configurationUpdate"] = configuration_merge(values_)
    return updates


def _deploy(args: argparse.Namespace, aws: Any, runtime: Runtime) -> int:
    from vla_edge.fleet.deployments import create_deployment, plan_deployment

    updates = parse_components(args.component, args.merge_config)
    request = plan_deployment(aws, args.thing_group, updates, rollout_settings(args), args.deployment_name,
                              merge=not args.replace)
    created = create_deployment(aws, request)
    deployment_id = created["deploymentId"]
    if not args.watch or aws.dry_run:
        _emit(args, aws.out, {**created, "request": request},
              f"deployment {deployment_id} created; follow it with: vla-edge fleet watch {deployment_id}\n")
        return 0
    return _watch_id(args, aws, runtime, deployment_id)


def _watch(args: argparse.Namespace, aws: Any, runtime: Runtime) -> int:
    return _watch_id(args, aws, runtime, args.deployment_id)


def _watch_id(args: argparse.Namespace, aws: Any, runtime: Runtime, deployment_id: str) -> int:
    from vla_edge.fleet.watch import watch_deployment

    progress = (runtime.stderr or sys.stderr) if args.json else aws.out
    result = watch_deployment(aws, deployment_id, progress, args.poll, args.timeout or None, runtime.clock,
                              runtime.sleep)
    if args.json:
        aws.out.write(json.dumps(result.to_json(), indent=2) + "\n")
    return 0 if result.ok or aws.dry_run else EXIT_FAILED


def _devices(args: argparse.Namespace, aws: Any, runtime: Runtime) -> int:
    from vla_edge.fleet.deployments import thing_group_arn
    from vla_edge.fleet.devices import devices_table, fleet_devices

    reports = fleet_devices(aws, thing_group_arn(aws, args.thing_group))
    if args.json:
        aws.out.write(json.dumps([r.to_json() for r in reports], indent=2) + "\n")
    else:
        aws.out.write(devices_table(reports) if reports else f"no core devices in {args.thing_group}\n")
    return 0


COMMANDS: dict[str, Callable[[argparse.Namespace, Any, Runtime], int]] = {
    "push-image": _push_image,
    "publish": _publish,
    "deploy": _deploy,
    "watch": _watch,
    "devices": _devices,
}
