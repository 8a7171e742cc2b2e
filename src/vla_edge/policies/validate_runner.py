"""The parent side of staging validation: run the validator process, turn its exit into a report.

See :mod:`vla_edge.policies.validate` for why the validator runs in its own process.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from vla_edge.policies.validate_report import (
    EXIT_BAD_ARGUMENTS,
    EXIT_FAILED,
    EXIT_OK,
    SMOKE_INFERENCES,
    ValidationReport,
    ms_since,
)

DEFAULT_TIMEOUT_S = 600.0
"""Loading a multi-GB VLA on a small device takes minutes; a validator still busy after this is stuck."""
STDERR_TAIL_CHARS = 2000
VALIDATOR_NICE = 10
"""Niceness a validator started by :func:`validate_in_subprocess` takes: on a small device it shares the
cores with the serving loop, whose chunks must not be late. Its latencies are measured under that load."""


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
    report.exit_code, report.stderr_tail, report.wall_ms = code, err[-STDERR_TAIL_CHARS:], ms_since(started)
    report.signal = _signal_name(-code) if code is not None and code < 0 else None
    return report
