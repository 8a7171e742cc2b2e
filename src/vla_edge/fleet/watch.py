"""Watch a deployment until every device of its group finished, one progress line per poll.

A Greengrass deployment to a thing group is a *continuous* IoT job: it never completes on
its own (devices that join the group later get it too) and stays ACTIVE. So "finished"
here means every core device that was in the group when watching started has a terminal
execution (succeeded, failed, rejected, timed out, canceled, removed), or the job was
canceled (the abort criteria fired) or the deployment was canceled or failed.

Counts come from the IoT job (``describe_job``: one call per poll, whatever the fleet's
size); the per-device outcome and its reason come once at the end from each device's
effective deployments. ``clock`` and ``sleep`` are injectable so tests do not wait.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

from vla_edge.fleet.aws import Aws

log = logging.getLogger(__name__)

COUNTS = (
    ("queued", "numberOfQueuedThings"),
    ("in-progress", "numberOfInProgressThings"),
    ("succeeded", "numberOfSucceededThings"),
    ("failed", "numberOfFailedThings"),
    ("rejected", "numberOfRejectedThings"),
    ("timed-out", "numberOfTimedOutThings"),
    ("canceled", "numberOfCanceledThings"),
    ("removed", "numberOfRemovedThings"),
)
_BAD = ("failed", "rejected", "timed-out", "canceled")
_OPEN = ("queued", "in-progress")


@dataclass
class DeviceOutcome:
    device: str
    status: str
    reason: str = ""


@dataclass
class WatchResult:
    deployment_id: str
    deployment_status: str
    job_status: str
    counts: dict[str, int]
    devices: list[DeviceOutcome] = field(default_factory=list)
    finished: bool = False
    message: str = ""

    @property
    def ok(self) -> bool:
        """Completed, and no device failed, was rejected, timed out or was canceled."""
        return self.finished and self.job_status != "CANCELED" and self.deployment_status not in (
            "CANCELED", "FAILED", "INACTIVE") and not any(self.counts.get(k, 0) for k in _BAD) and not any(
            d.status not in ("SUCCEEDED", "COMPLETED") for d in self.devices)

    def to_json(self) -> dict[str, Any]:
        return {"deploymentId": self.deployment_id, "deploymentStatus": self.deployment_status,
                "jobStatus": self.job_status, "counts": self.counts, "finished": self.finished, "ok": self.ok,
                "message": self.message, "devices": [d.__dict__ for d in self.devices]}


def group_devices(aws: Aws, target_arn: str) -> list[str]:
    """Core devices of the deployment's target: the group's members, or the one thing it names."""
    if ":thing/" in target_arn:
        return [target_arn.rsplit("/", 1)[1]]
    gg = aws.client("greengrassv2")
    names: list[str] = []
    token = None
    while True:
        page = gg.list_core_devices(thingGroupArn=target_arn, **({"nextToken": token} if token else {}))
        names += [d["coreDeviceThingName"] for d in page.get("coreDevices", [])]
        token = page.get("nextToken")
        if not token:
            return names


def device_outcome(aws: Aws, device: str, deployment_id: str) -> DeviceOutcome:
    """The device's execution of ``deployment_id`` from its effective deployments, with Greengrass's reason."""
    gg = aws.client("greengrassv2")
    token = None
    while True:
        page = gg.list_effective_deployments(coreDeviceThingName=device, **({"nextToken": token} if token else {}))
        for entry in page.get("effectiveDeployments", []):
            if entry.get("deploymentId") == deployment_id:
                details = entry.get("statusDetails") or {}
                reason = entry.get("reason") or ""
                if details.get("errorTypes"):
                    reason = f"{reason} [{', '.join(details['errorTypes'])}]".strip()
                return DeviceOutcome(device, entry["coreDeviceExecutionStatus"], reason)
        token = page.get("nextToken")
        if not token:
            return DeviceOutcome(device, "NOT_RECEIVED", "the device has not reported this deployment (offline?)")


def progress_line(elapsed_s: float, status: str, counts: dict[str, int], total: int, width: int = 20) -> str:
    """``[  1m30s] IN_PROGRESS  5/12 [########------------] queued 4, in-progress 3, succeeded 5, ...``"""
    done = sum(v for k, v in counts.items() if k not in _OPEN)
    filled = int(width * min(done, total) / total) if total else width
    minutes, seconds = divmod(int(elapsed_s), 60)
    shown = ", ".join(f"{label} {counts.get(label, 0)}" for label, _ in COUNTS if label != "removed" or counts.get(label))
    return f"[{minutes:3d}m{seconds:02d}s] {status:<11} {done}/{total} [{'#' * filled}{'-' * (width - filled)}] {shown}"


def watch_deployment(
    aws: Aws,
    deployment_id: str,
    out: TextIO | None = None,
    poll_s: float = 10.0,
    timeout_s: float | None = 3 * 3600.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> WatchResult:
    """Poll until the deployment finished (see the module docstring) or ``timeout_s`` passed."""
    out = out or sys.stdout
    gg, iot = aws.client("greengrassv2"), aws.client("iot")
    deployment = gg.get_deployment(deploymentId=deployment_id)
    devices = group_devices(aws, deployment["targetArn"])
    total = len(devices)
    out.write(f"watching deployment {deployment_id} ({deployment.get('deploymentName', '')}) on {total} core "
              f"device{'s' if total != 1 else ''} of {deployment['targetArn']}\n")
    started = clock()
    result = WatchResult(deployment_id, deployment.get("deploymentStatus", ""), "", {})
    while True:
        job_id = deployment.get("iotJobId")
        job: dict[str, Any] = iot.describe_job(jobId=job_id)["job"] if job_id else {}
        details = job.get("jobProcessDetails") or {}
        result.counts = {label: int(details.get(key, 0)) for label, key in COUNTS}
        result.job_status = job.get("status", "")
        result.deployment_status = deployment.get("deploymentStatus", "")
        out.write(progress_line(clock() - started, result.job_status or result.deployment_status, result.counts,
                                total) + "\n")
        out.flush()
        ended = sum(v for k, v in result.counts.items() if k not in _OPEN)
        if aws.dry_run:
            out.write(f"dry run: one poll shown; watching repeats it every {poll_s:g} s until every device finished\n")
            return result
        if result.deployment_status == "INACTIVE":
            result.finished = True
            result.message = "a newer deployment to the same target replaced this one (it is INACTIVE)"
        elif result.deployment_status in ("CANCELED", "FAILED", "COMPLETED"):
            result.finished, result.message = True, f"the deployment is {result.deployment_status}"
        elif result.job_status in ("CANCELED", "COMPLETED", "DELETION_IN_PROGRESS"):
            result.finished = True
            result.message = ("the rollout was aborted (abort criteria met, or canceled)" if result.job_status == "CANCELED"
                              else f"the IoT job is {result.job_status}")
        elif total == 0:
            result.finished, result.message = True, "the group has no core devices yet; they get it when they join"
        elif ended >= total and not any(result.counts[k] for k in _OPEN):
            result.finished, result.message = True, "every device finished"
        if result.finished:
            break
        if timeout_s is not None and clock() - started >= timeout_s:
            result.message = (f"still rolling out after {timeout_s:.0f} s; go on with "
                              f"`vla-edge fleet watch {deployment_id}`")
            break
        sleep(poll_s)
        deployment = gg.get_deployment(deploymentId=deployment_id)
    result.devices = [device_outcome(aws, device, deployment_id) for device in devices]
    for outcome in result.devices:
        out.write(f"  {outcome.device:<32} {outcome.status:<12} {outcome.reason}".rstrip() + "\n")
    verdict = "succeeded" if result.ok else "did NOT succeed"
    out.write(f"deployment {deployment_id} {verdict}: {result.message}\n")
    return result
