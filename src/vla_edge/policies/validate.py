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
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import resource
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vla_edge.errors import PolicyError, ValidationFailed

log = logging.getLogger("vla_edge.validate")

EXIT_OK, EXIT_FAILED, EXIT_BAD_ARGUMENTS = 0, 1, 2
SMOKE_INFERENCES = 5
DEFAULT_TIMEOUT_S = 600.0
"""Loading a multi-GB VLA on a small device takes minutes; a validator still busy after this is stuck."""
STDERR_TAIL_CHARS = 2000
VALIDATOR_NICE = 10
"""Niceness a validator started by :func:`validate_in_subprocess` takes: on a small device it shares the
cores with the serving loop, whose chunks must not be late. Its latencies are measured under that load."""
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


class ModelRejected(ValidationFailed):
    """The model failed one check; ``reason`` is the label a ModelReport carries."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class BadArguments(ValueError):
    """The validator was called wrongly (a caller bug, exit 2), as opposed to a model failing."""


@dataclass
class ValidationReport:
    """What the validator found. The first block is the child's JSON; the rest the parent adds."""

    ok: bool
    reason: str | None = None
    detail: str = ""
    policy_type: str | None = None
    load_ms: float | None = None
    warmup_ms: float | None = None
    smoke_inferences: int = 0
    smoke_ms_p50: float | None = None
    smoke_ms_max: float | None = None
    action_min: dict[str, float] = field(default_factory=dict)
    action_max: dict[str, float] = field(default_factory=dict)
    peak_rss_mb: float | None = None
    # filled in by validate_in_subprocess
    exit_code: int | None = None
    signal: str | None = None
    stderr_tail: str = ""
    wall_ms: float | None = None

    CHILD_FIELDS = ("ok", "reason", "detail", "policy_type", "load_ms", "warmup_ms", "smoke_inferences",
                    "smoke_ms_p50", "smoke_ms_max", "action_min", "action_max", "peak_rss_mb")

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        return {key: data[key] for key in self.CHILD_FIELDS}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ValidationReport:
        return cls(**{key: data[key] for key in cls.CHILD_FIELDS if key in data})


# --- the checks (run inside the validator process) ---------------------------------------------


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000.0, 3)


def peak_rss_mb() -> float:
    """This process's peak resident memory (Linux reports KiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)


def _check_config(path: Path, cameras: Sequence[str], joint_names: Sequence[str]) -> str:
    """Everything ``config.json`` can tell, before weights are read; returns the policy type."""
    from vla_edge.policies.checks import (
        check_requirements,
        describe_features,
        feature_problems,
    )
    from vla_edge.policies.loading import check_policy_dir

    try:
        check_policy_dir(path)
        import lerobot.policies.factory  # noqa: F401 - registers every policy type's config class
        from lerobot.configs.policies import PreTrainedConfig

        config = PreTrainedConfig.from_pretrained(path, local_files_only=True)
    except PolicyError as exc:
        raise ModelRejected("load_failed", str(exc)) from exc
    except Exception as exc:  # noqa: BLE001 - draccus/json raise many types for a broken config: a failed model
        raise ModelRejected("load_failed", f"{path / 'config.json'} is not a valid LeRobot policy config: "
                            f"{type(exc).__name__}: {exc}. Re-export the model with save_pretrained.") from exc
    try:
        check_requirements(config.type, path)
    except PolicyError as exc:
        raise ModelRejected("missing_extra", str(exc)) from exc
    inputs, outputs = config.input_features or {}, config.output_features or {}
    problems = feature_problems(inputs, outputs, cameras, joint_names)
    if problems:
        raise ModelRejected(
            "feature_mismatch",
            "the model does not fit this device: " + "; ".join(problems)
            + f". It reads {describe_features(inputs, outputs)}; "
            f"this device has cameras {list(cameras)} and joints {list(joint_names)}. "
            "Deploy a model trained for this robot's cameras and joints, or fix the device's configuration.",
        )
    return str(config.type)


def _load(path: Path, device: str, dtype: str) -> Any:
    from vla_edge.policies.loading import load_policy

    try:
        return load_policy(path, device, dtype=dtype)
    except PolicyError as exc:
        raise ModelRejected("load_failed", str(exc)) from exc
    except Exception as exc:  # noqa: BLE001 - anything LeRobot/torch raise while loading is this model's failure
        raise ModelRejected("load_failed", f"loading {path} failed: {type(exc).__name__}: {exc}") from exc


Step = tuple[dict[str, np.ndarray], list[float]]
"""One recorded observation: images by camera, joint positions in ``--joints`` order."""


def load_recorded(directory: Path, cameras: Sequence[str], joint_names: Sequence[str]) -> list[Step]:
    """(images by camera, joint positions) of every recorded step; BadArguments when the folder is malformed."""
    import cv2

    states_file = directory / "states.json"
    try:
        data = json.loads(states_file.read_text())
    except (OSError, ValueError) as exc:
        raise BadArguments(f"--recorded {directory}: cannot read states.json ({exc})") from exc
    names = list(joint_names)
    if isinstance(data, dict):
        names, data = list(data.get("names", [])), data.get("states")
    if not isinstance(data, list) or not all(isinstance(s, list) and len(s) == len(names) for s in data):
        raise BadArguments(f"--recorded {directory}: states.json must hold lists of {len(names)} joint positions")
    missing = [name for name in joint_names if name not in names]
    if missing:
        raise BadArguments(f"--recorded {directory}: states.json lacks joints {missing}")
    order = [names.index(name) for name in joint_names]
    frames = {}
    for camera in cameras:
        folder = directory / camera
        frames[camera] = sorted(p for p in folder.glob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not frames[camera]:
            raise BadArguments(f"--recorded {directory}: no images in {folder}")
    steps = min(len(data), *(len(files) for files in frames.values()))
    recorded = []
    for index in range(steps):
        images = {}
        for camera in cameras:
            image = cv2.imread(str(frames[camera][index]), cv2.IMREAD_COLOR)
            if image is None:
                raise BadArguments(f"--recorded: cannot decode {frames[camera][index]}")
            images[camera] = np.ascontiguousarray(image[:, :, ::-1])  # OpenCV reads BGR; cameras deliver RGB
        recorded.append((images, [float(data[index][i]) for i in order]))
    return recorded


def _synthetic(policy: Any, seed: int, state: np.ndarray, task: str) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    images = {}
    for camera in policy.camera_names:
        channels, height, width = policy.image_shape(camera)
        images[camera] = rng.integers(0, 256, (height, width, channels), dtype=np.uint8)
    return policy.build_observation(images, state, task)


def _predict(policy: Any, observation: dict[str, Any], history: Sequence[dict[str, Any]]) -> tuple[np.ndarray, float]:
    started = time.perf_counter()
    try:
        actions = policy.predict_chunk(observation, history=history) if history else policy.predict_chunk(observation)
    except PolicyError as exc:
        reason = "non_finite_actions" if "non-finite" in str(exc) else "inference_failed"
        raise ModelRejected(reason, f"{exc}. The model cannot be served; fix or retrain it.") from exc
    except Exception as exc:  # noqa: BLE001 - any error from inside the model is this model's failure
        raise ModelRejected("inference_failed", f"inference raised {type(exc).__name__}: {exc}") from exc
    return actions, _ms(started)


def _runs(policy: Any, smoke: int, state: np.ndarray, recorded: list[Step], task: str) -> list[tuple[Any, list[Any]]]:
    """(observation, history) of every inference: a warm-up, ``smoke`` synthetic ones, the recorded ones.

    Synthetic observations repeat themselves as history (as the warm-up does); recorded ones get
    the recorded observations before them, as the loop gets the frames one ``actionDt`` earlier.
    """
    older = policy.observation_steps - 1
    runs = []
    for seed in range(smoke + 1):
        observation = _synthetic(policy, seed, state, task)
        runs.append((observation, [observation] * older))
    played = [policy.build_observation(images, positions, task) for images, positions in recorded]
    return runs + [(current, played[max(0, i - older) : i] if older else []) for i, current in enumerate(played)]


def _smoke(policy: Any, runs: list[tuple[Any, list[Any]]], joint_names: Sequence[str],
           limits: Mapping[str, tuple[float, float]], report: ValidationReport) -> list[str]:
    """Run every inference into ``report`` (latencies, action range); the action values outside ``limits``."""
    lows = np.array([limits.get(n, (-math.inf, math.inf))[0] for n in joint_names])
    highs = np.array([limits.get(n, (-math.inf, math.inf))[1] for n in joint_names])
    minimum, maximum = np.full(len(joint_names), np.inf), np.full(len(joint_names), -np.inf)
    latencies: list[float] = []
    outside: list[str] = []
    for index, (observation, history) in enumerate(runs):
        actions, elapsed = _predict(policy, observation, history)
        if index == 0:
            report.warmup_ms = elapsed  # lazy initialisation: not a steady-state latency
        else:
            latencies.append(elapsed)
        minimum, maximum = np.minimum(minimum, actions.min(axis=0)), np.maximum(maximum, actions.max(axis=0))
        for step, joint in zip(*np.nonzero((actions < lows) | (actions > highs)), strict=True):
            outside.append(f"{joint_names[joint]}={actions[step, joint]:.4g} (observation {index}, action {step})")
    report.smoke_inferences = len(latencies)
    report.smoke_ms_p50 = round(float(np.median(latencies)), 3) if latencies else None
    report.smoke_ms_max = round(max(latencies), 3) if latencies else None
    report.action_min = {n: round(float(v), 6) for n, v in zip(joint_names, minimum, strict=True)}
    report.action_max = {n: round(float(v), 6) for n, v in zip(joint_names, maximum, strict=True)}
    return outside


def run_validation(
    path: Path,
    cameras: Sequence[str],
    joint_names: Sequence[str],
    *,
    device: str = "cpu",
    dtype: str = "float32",
    smoke: int = SMOKE_INFERENCES,
    latency_budget_ms: float | None = None,
    joint_limits: Mapping[str, tuple[float, float]] | None = None,
    recorded: Path | None = None,
    task: str = "",
) -> ValidationReport:
    """All checks, in this process (the validator's ``main`` runs this). BadArguments for a caller error."""
    limits = dict(joint_limits or {})
    unknown = sorted(set(limits) - set(joint_names))
    if unknown:
        raise BadArguments(f"--limits names joints {unknown} that are not among --joints {list(joint_names)}")
    recorded_steps = load_recorded(recorded, cameras, joint_names) if recorded is not None else []
    report = ValidationReport(ok=False)
    try:
        report.policy_type = _check_config(path, cameras, joint_names)
        started = time.perf_counter()
        policy = _load(path, device, dtype)
        report.load_ms = _ms(started)
        mid = np.array([sum(limits[n]) / 2.0 if n in limits else 0.0 for n in joint_names], np.float32)
        outside = _smoke(policy, _runs(policy, smoke, mid, recorded_steps, task), joint_names, limits, report)
        if outside:
            bounds = ", ".join(f"{n} [{lo:g}, {hi:g}]" for n, (lo, hi) in limits.items())
            raise ModelRejected(
                "out_of_limits",
                f"{len(outside)} action value(s) outside the joint limits ({bounds}): {'; '.join(outside[:8])}. "
                "The model was trained for other joint units or ranges (check its normMode and calibration); "
                "do not deploy it to this arm.",
            )
        median = report.smoke_ms_p50
        if latency_budget_ms is not None and median is not None and median > latency_budget_ms:
            raise ModelRejected(
                "too_slow",
                f"median smoke inference {median:.1f} ms (max {report.smoke_ms_max:.1f} ms) exceeds the latency "
                f"budget of {latency_budget_ms:g} ms on {device} ({dtype}). Use a faster device or lower "
                "precision, a smaller model, or raise the budget if the control rate allows it.",
            )
        report.ok = True
        report.detail = (f"{report.policy_type} loaded in {report.load_ms:.0f} ms; {report.smoke_inferences} smoke "
                         f"inference(s) ({len(recorded_steps)} recorded), median {median} ms")
    except ModelRejected as rejected:
        report.reason, report.detail = rejected.reason, rejected.detail
    report.peak_rss_mb = peak_rss_mb()
    return report


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


# --- the parent side ------------------------------------------------------------------------------


def validator_command(
    path: Path, cameras: Sequence[str], joint_names: Sequence[str], *, device: str = "cpu", dtype: str = "float32",
    smoke: int = SMOKE_INFERENCES, latency_budget_ms: float | None = None,
    joint_limits: Mapping[str, Sequence[float]] | None = None, recorded: Path | None = None, task: str = "",
    threads: int = 1, nice: int = VALIDATOR_NICE,
) -> list[str]:
    """The argv that runs the validator with this interpreter."""
    command = [sys.executable, "-m", "vla_edge.policies.validate", str(path), "--cameras", *cameras,
               "--joints", *joint_names, "--device", device, "--dtype", dtype, "--smoke", str(smoke),
               "--threads", str(threads), "--nice", str(nice), f"--task={task}"]
    if latency_budget_ms is not None:
        command += ["--latency-budget-ms", repr(float(latency_budget_ms))]
    if joint_limits:
        command += ["--limits", json.dumps({name: list(pair) for name, pair in joint_limits.items()})]
    if recorded is not None:
        command += ["--recorded", str(recorded)]
    return command


def _signal_name(number: int) -> str:
    import signal

    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _died(path: Path, code: int | None, stopped: str | None, timeout_s: float) -> ValidationReport:
    """The report of a validator that gave none: killed by us (timeout, cancel), by a signal, or it crashed."""
    if stopped == "timeout":
        return ValidationReport(ok=False, reason="timeout", detail=(
            f"validation of {path} did not finish within {timeout_s:g} s and was killed. The model may be too "
            "large for this device, or its loading hangs; see the validator's stderr."))
    if stopped == "cancelled":
        return ValidationReport(ok=False, reason="cancelled", detail="validation was cancelled (the caller stops)")
    if code is not None and code < 0:
        oom = " (the kernel's out-of-memory killer sends SIGKILL: check free memory and the model's size)"
        return ValidationReport(ok=False, reason="validator_crashed", detail=(
            f"the validator of {path} was killed by {_signal_name(-code)}{oom if -code == 9 else ''}. "
            "The model cannot be staged safely."))
    return ValidationReport(ok=False, reason="validator_crashed",
                            detail=f"the validator of {path} exited with status {code} without a report")


def validate_in_subprocess(
    path: Path, cameras: Sequence[str], joint_names: Sequence[str], *, timeout_s: float = DEFAULT_TIMEOUT_S,
    cancel: threading.Event | None = None, env: Mapping[str, str] | None = None, **options: Any,
) -> ValidationReport:
    """Run the validator process and return its report; never raises for a failing or dying validator.

    ``options`` are :func:`validator_command`'s. A validator killed by a signal (the kernel's
    OOM killer sends SIGKILL) or exiting without a report becomes ``validator_crashed``; one
    still running after ``timeout_s``, or when ``cancel`` is set, is killed: ``timeout`` or
    ``cancelled``. Each carries the exit status (negative: the signal) and its stderr's tail.
    """
    started = time.perf_counter()
    process = subprocess.Popen(validator_command(path, cameras, joint_names, **options), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=None if env is None else dict(env))
    deadline = time.monotonic() + timeout_s
    stopped: str | None = None
    while True:
        try:  # communicate() again after a timeout loses no output, and keeps both pipes drained
            out, err = process.communicate(timeout=max(0.01, min(0.25, deadline - time.monotonic())))
            break
        except subprocess.TimeoutExpired:
            if time.monotonic() >= deadline or (cancel is not None and cancel.is_set()):
                stopped = "timeout" if time.monotonic() >= deadline else "cancelled"
                process.kill()
                out, err = process.communicate()
                break
    code = process.returncode
    report = None
    lines = [line for line in out.splitlines() if line.strip()]
    if stopped is None and code in (EXIT_OK, EXIT_FAILED, EXIT_BAD_ARGUMENTS) and lines:
        try:
            report = ValidationReport.from_json(json.loads(lines[-1]))
        except (ValueError, TypeError):
            report = None
    if report is None:
        report = _died(path, code, stopped, timeout_s)
        if err.strip():
            report.detail += " Validator stderr (end): " + err[-800:].strip()
    report.exit_code, report.stderr_tail, report.wall_ms = code, err[-STDERR_TAIL_CHARS:], _ms(started)
    report.signal = _signal_name(-code) if code is not None and code < 0 else None
    return report


if __name__ == "__main__":
    sys.exit(main())
