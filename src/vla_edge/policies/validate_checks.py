"""The validator's checks, run inside the validator process (see :mod:`vla_edge.policies.validate`).

:func:`run_validation` runs them in order; the first failure becomes the report's ``reason``.
"""

from __future__ import annotations

import json
import math
import resource
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vla_edge.errors import PolicyError
from vla_edge.policies.validate_report import (
    SMOKE_INFERENCES,
    BadArguments,
    ModelRejected,
    ValidationReport,
    ms_since,
)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


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
    return actions, ms_since(started)


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
        report.load_ms = ms_since(started)
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
