"""``vla-edge model manifest DIR`` and ``vla-edge model publish DIR``: models for the fleet.

``manifest``: run on the machine that publishes a model, before uploading it: the manifest
lists every file's size and sha256, the policy's features and the memory it needs, and the
updater on each device checks a download against it before the model may serve.

``publish``: manifest, image with the model baked in, ECR, component version and
thing-group deployment in one command (:mod:`vla_edge.fleet.model_cli`).

Exit codes: 0 done, 2 the directory or the arguments are not usable (one line on stderr
says why and what to do); ``publish`` also 1 (an AWS or docker step failed, or the rollout
did not succeed) and 3 (no Docker engine: the commands were printed).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from vla_edge.errors import ModelUpdateError

if TYPE_CHECKING:
    from vla_edge.fleet.cli import Runtime

EXIT_USAGE = 2


class _UsageError(Exception):
    """argparse's complaint, turned into one line and exit code 2 instead of a usage dump."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise _UsageError(f"{self.prog}: {message}")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="vla-edge model", description="Prepare models for the vla-edge model updater.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=_Parser)
    manifest = commands.add_parser(
        "manifest",
        help="write the manifest (files, sha256, features, memory) of a LeRobot policy directory",
        description=(
            "Describe a LeRobot policy directory: every file's size and sha256, the model digest devices "
            "report, policy type, features and memory. May write vla_edge_model.json (name and version) "
            "into DIR so the directory names itself the way the manifest does."
        ),
    )
    manifest.add_argument("directory", type=Path, metavar="DIR", help="directory written by save_pretrained()")
    manifest.add_argument("--name", help="model name (default: vla_edge_model.json's, else the directory name)")
    manifest.add_argument("--version", help="model version (default: vla_edge_model.json's; required otherwise)")
    manifest.add_argument("--robot", help="robot type the model was trained for, e.g. so101_follower")
    manifest.add_argument(
        "--norm-mode", choices=("degrees", "range_m100_100"), help="joint units the model was trained in"
    )
    manifest.add_argument("--memory-mb", type=int, help="memory the model needs (default: estimated from the weights)")
    where = manifest.add_mutually_exclusive_group()
    where.add_argument("--output", type=Path, metavar="FILE", help="write here (default: DIR/vla_edge_manifest.json)")
    where.add_argument("--print", action="store_true", help="write the manifest to stdout instead of a file")
    from vla_edge.fleet.model_cli import add_publish_parser

    add_publish_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None, runtime: Runtime | None = None) -> int:
    """Run ``vla-edge model ...`` with ``argv`` (without the ``model`` word); returns the exit code.

    ``runtime`` (publish only): the AWS clients and docker runner to use, for tests.
    """
    from vla_edge.fleet.cli import UsageError as FleetUsageError

    try:
        args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    except (_UsageError, FleetUsageError) as exc:
        sys.stderr.write(f"{exc}\n")
        return EXIT_USAGE
    except SystemExit as exc:  # --help
        return int(exc.code or 0)
    if args.command == "publish":
        from vla_edge.fleet.cli import Runtime as FleetRuntime
        from vla_edge.fleet.cli import run_command
        from vla_edge.fleet.model_cli import run_publish

        return run_command("vla-edge model publish", args, runtime or FleetRuntime(), run_publish)
    if args.memory_mb is not None and args.memory_mb <= 0:
        sys.stderr.write("vla-edge model manifest: --memory-mb must be a positive number of megabytes\n")
        return EXIT_USAGE
    try:
        return _manifest(args)
    except ModelUpdateError as exc:
        sys.stderr.write(f"vla-edge model manifest: {exc}\n")
        return EXIT_USAGE


def _manifest(args: argparse.Namespace) -> int:
    from vla_edge.updater.manifest import build_manifest, write_manifest

    manifest = build_manifest(
        args.directory,
        name=args.name,
        version=args.version,
        robot=args.robot,
        norm_mode=args.norm_mode,
        memory_mb=args.memory_mb,
    )
    if args.print:
        sys.stdout.write(manifest.to_json_bytes().decode())
        return 0
    target = write_manifest(manifest, args.output if args.output is not None else args.directory)
    sys.stdout.write(
        f"{target}: {manifest.name} {manifest.version} ({manifest.policy_type}) sha256 {manifest.sha256}, "
        f"{len(manifest.files)} files, {manifest.total_bytes / 1e6:.1f} MB, needs ~{manifest.memory_mb} MB\n"
    )
    return 0
