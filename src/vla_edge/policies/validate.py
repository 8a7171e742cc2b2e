"""Staging validation of a model, run in its own process: ``python -m vla_edge.policies.validate``.

Why a separate process
    A model that segfaults in a native kernel, exhausts memory while loading or hangs in a
    C extension would take the serving inference process (and the arm's plan) with it if it
    were loaded there first. Here only the validator dies; :func:`validate_in_subprocess`
    turns that death into a report (``validator_crashed`` with the signal, or ``timeout``)
    and the serving model never notices. The validator also raises its own
    ``oom_score_adj`` so that, when memory runs out, the kernel kills it and not the server,
    and runs at a lower CPU priority (``--nice``), so that it does not delay the server's chunks.

What it checks, in order (the first failure is the report's ``reason``)
    ``load_failed``/``missing_extra``/``feature_mismatch``: the policy directory, its
    ``config.json``, installed extras and features (cameras, joints) before any weights are
    read, then LeRobot's real loading (:func:`vla_edge.policies.load_policy`).
    ``inference_failed``/``non_finite_actions``: one warm-up inference, then ``--smoke``
    inferences on synthetic observations (random pixels, joints mid-range) and on recorded
    ones when ``--recorded`` is given. ``out_of_limits``: any action outside ``--limits``.
    ``too_slow``: the median smoke latency above ``--latency-budget-ms`` (the median, not
    the maximum: one scheduler hiccup on a shared device must not reject a model; the
    maximum is reported beside it).

Output
    Exactly one JSON object on stdout (library output is sent to stderr meanwhile); exit
    status 0 when the model passed, 1 when it failed validation, 2 for bad arguments.

Recorded observations (``--recorded DIR``)
    ``DIR/states.json``: a list of joint-position lists in ``--joints`` order, or
    ``{"names": [...], "states": [[...], ...]}`` in any order; ``DIR/<camera>/``: one image
    per state (PNG/JPEG, sorted by file name) for every camera.

Where the parts live
    This module is the command line (the validator process's ``main``) and re-exports the rest:
    the checks in :mod:`~vla_edge.policies.validate_checks`, the parent's side
    (:func:`validate_in_subprocess`) in :mod:`~vla_edge.policies.validate_runner`, and what both
    share (exit statuses, :class:`ValidationReport`, :class:`ModelRejected`) in
    :mod:`~vla_edge.policies.validate_report`.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vla_edge.policies.validate_checks import (
    IMAGE_SUFFIXES,
    Step,
    load_recorded,
    peak_rss_mb,
    run_validation,
)
from vla_edge.policies.validate_report import (
    EXIT_BAD_ARGUMENTS,
    EXIT_FAILED,
    EXIT_OK,
    SMOKE_INFERENCES,
    BadArguments,
    ModelRejected,
    ValidationReport,
)
from vla_edge.policies.validate_runner import (
    DEFAULT_TIMEOUT_S,
    STDERR_TAIL_CHARS,
    VALIDATOR_NICE,
    validate_in_subprocess,
    validator_command,
)

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "EXIT_BAD_ARGUMENTS",
    "EXIT_FAILED",
    "EXIT_OK",
    "IMAGE_SUFFIXES",
    "SMOKE_INFERENCES",
    "STDERR_TAIL_CHARS",
    "VALIDATOR_NICE",
    "BadArguments",
    "ModelRejected",
    "Step",
    "ValidationReport",
    "build_parser",
    "load_recorded",
    "main",
    "peak_rss_mb",
    "run_validation",
    "validate_in_subprocess",
    "validator_command",
]

log = logging.getLogger("vla_edge.validate")


# --- command line (the child process) ------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse would print usage and exit 2 without a JSON report
        raise BadArguments(message)


def _limits(text: str) -> dict[str, tuple[float, float]]:
    try:
        raw = json.loads(text)
        limits = {str(name): (float(pair[0]), float(pair[1])) for name, pair in raw.items()}
    except (ValueError, TypeError, AttributeError, IndexError, KeyError) as exc:
        raise argparse.ArgumentTypeError(f'expected JSON like {{"joint": [min, max]}}: {exc}') from exc
    if any(lo > hi or not (math.isfinite(lo) and math.isfinite(hi)) for lo, hi in limits.values()):
        raise argparse.ArgumentTypeError("every limit must be finite with min <= max")
    return limits


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m vla_edge.policies.validate", description="Validate a model before serving it.")
    parser.add_argument("path", type=Path, help="the model directory (LeRobot save_pretrained output)")
    parser.add_argument("--cameras", nargs="+", required=True, help="this device's camera names")
    parser.add_argument("--joints", nargs="+", required=True, help="this device's joint names, in state/action order")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=("float32", "float16", "bfloat16"))
    parser.add_argument("--smoke", type=int, default=SMOKE_INFERENCES, help="timed inferences after one warm-up")
    parser.add_argument("--latency-budget-ms", type=float, default=None)
    parser.add_argument("--limits", type=_limits, default=None, help='JSON {"joint": [min, max], ...}')
    parser.add_argument("--recorded", type=Path, default=None, help="folder of recorded frames and states")
    parser.add_argument("--task", default="")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--nice", type=int, default=0, help="lower this process's CPU priority by this much")
    return parser


def _protect_the_server() -> None:
    """Ask the kernel to kill this process first when memory runs out (raising the score needs no privilege)."""
    try:
        Path("/proc/self/oom_score_adj").write_text("1000")
    except OSError as exc:  # not Linux, or a read-only /proc: validation still works, just unprotected
        log.info("cannot raise oom_score_adj (%s); an out-of-memory kill may pick another process", exc)


def main(argv: Sequence[str] | None = None) -> int:
    report_fd = os.dup(1)
    os.dup2(2, 1)  # whatever libraries print goes to stderr: stdout carries only the report
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before LeRobot or huggingface_hub are imported
    try:
        args = build_parser().parse_args(argv)
        if args.smoke < 1 or args.threads < 1:
            raise BadArguments("--smoke and --threads must be at least 1")
        log.info("validating %s for cameras %s and joints %s on %s", args.path, args.cameras, args.joints, args.device)
        _protect_the_server()
        if args.nice > 0:
            os.nice(args.nice)  # the serving loop on the same cores comes first; validation can wait
        from vla_edge.policies.loading import set_torch_threads

        set_torch_threads(args.threads)
        report = run_validation(
            args.path.expanduser().resolve(), args.cameras, args.joints, device=args.device, dtype=args.dtype,
            smoke=args.smoke, latency_budget_ms=args.latency_budget_ms, joint_limits=args.limits,
            recorded=args.recorded, task=args.task,
        )
        code = EXIT_OK if report.ok else EXIT_FAILED
    except BadArguments as exc:
        report = ValidationReport(ok=False, reason="bad_arguments", detail=f"{exc}. See --help")
        code = EXIT_BAD_ARGUMENTS
    sys.stdout.flush()
    os.write(report_fd, (json.dumps(report.to_json()) + "\n").encode())
    return code


if __name__ == "__main__":
    sys.exit(main())
