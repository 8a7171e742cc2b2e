"""``vla-edge fleet watch``: progress lines from the IoT job, each device's outcome from Greengrass (both stubbed)."""

from __future__ import annotations

from datetime import UTC, datetime

from botocore.stub import Stubber
from support.fleet import Fleet, group_arn

from vla_edge.fleet.cli import main

NOW = datetime(2026, 1, 1, tzinfo=UTC)
TARGET = group_arn("robots")
DEVICES = ["robot-01", "robot-02", "robot-03"]


class FakeTime:
    """The watch's clock and sleep: sleeping moves the clock, nobody waits."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def _deployment(fleet: Fleet, status: str = "ACTIVE") -> None:
    fleet.gg.add_response("get_deployment", {"deploymentId": "d-1", "deploymentName": "vla-edge robots: inference 1.0.4",
                                             "targetArn": TARGET, "iotJobId": "job-1", "deploymentStatus": status},
                          {"deploymentId": "d-1"})


def _job(iot: Stubber, status: str = "IN_PROGRESS", **counts: int) -> None:
    keys = {"queued": "numberOfQueuedThings", "in_progress": "numberOfInProgressThings",
            "succeeded": "numberOfSucceededThings", "failed": "numberOfFailedThings",
            "rejected": "numberOfRejectedThings", "timed_out": "numberOfTimedOutThings",
            "canceled": "numberOfCanceledThings"}
    iot.add_response("describe_job", {"job": {"jobId": "job-1", "status": status, "jobProcessDetails": {
        keys[k]: v for k, v in counts.items()}}}, {"jobId": "job-1"})


def _devices(fleet: Fleet) -> None:
    fleet.gg.add_response("list_core_devices", {"coreDevices": [{"coreDeviceThingName": d} for d in DEVICES]},
                          {"thingGroupArn": TARGET})


def _outcome(fleet: Fleet, device: str, status: str, reason: str = "", errors: list[str] | None = None) -> None:
    entry = {"deploymentId": "d-1", "deploymentName": "x", "targetArn": TARGET, "coreDeviceExecutionStatus": status,
             "creationTimestamp": NOW, "modifiedTimestamp": NOW}
    if reason:
        entry["reason"] = reason
    if errors:
        entry["statusDetails"] = {"errorTypes": errors}
    older = {**entry, "deploymentId": "d-0", "coreDeviceExecutionStatus": "SUCCEEDED"}
    fleet.gg.add_response("list_effective_deployments", {"effectiveDeployments": [older, entry]},
                          {"coreDeviceThingName": device})


def test_progress_lines_until_every_device_succeeded_then_each_device(fleet: Fleet) -> None:
    iot = fleet.stub("iot")
    _deployment(fleet)
    _devices(fleet)
    _job(iot, queued=3)
    _deployment(fleet)
    _job(iot, queued=1, in_progress=1, succeeded=1)
    _deployment(fleet)
    _job(iot, succeeded=3)
    for device in DEVICES:
        _outcome(fleet, device, "SUCCEEDED")
    time = FakeTime()
    runtime = fleet.runtime(clock=time.clock, sleep=time.sleep)

    code = main(["watch", "d-1", "--poll", "15"], runtime)

    assert code == 0, runtime.stderr.getvalue()
    assert runtime.stdout.getvalue().splitlines() == [
        f"watching deployment d-1 (vla-edge robots: inference 1.0.4) on 3 core devices of {TARGET}",
        ("[  0m00s] IN_PROGRESS 0/3 [--------------------] queued 3, in-progress 0, succeeded 0, failed 0, rejected 0, "
        "timed-out 0, canceled 0"),
        ("[  0m15s] IN_PROGRESS 1/3 [######--------------] queued 1, in-progress 1, succeeded 1, failed 0, rejected 0, "
        "timed-out 0, canceled 0"),
        ("[  0m30s] IN_PROGRESS 3/3 [####################] queued 0, in-progress 0, succeeded 3, failed 0, rejected 0, "
        "timed-out 0, canceled 0"),
        "  robot-01                         SUCCEEDED",
        "  robot-02                         SUCCEEDED",
        "  robot-03                         SUCCEEDED",
        "deployment d-1 succeeded: every device finished",
    ]
    assert time.sleeps == [15.0, 15.0]
    fleet.gg.assert_no_pending_responses()
    iot.assert_no_pending_responses()


def test_an_aborted_rollout_exits_1_and_says_which_device_failed_and_why(fleet: Fleet) -> None:
    iot = fleet.stub("iot")
    _deployment(fleet)
    _devices(fleet)
    _job(iot, "CANCELED", succeeded=1, failed=1, canceled=1)
    _outcome(fleet, "robot-01", "SUCCEEDED")
    _outcome(fleet, "robot-02", "FAILED", "com.vlaedge.Inference errored while starting; rolled back",
             ["COMPONENT_BROKEN"])
    _outcome(fleet, "robot-03", "CANCELED")
    runtime = fleet.runtime(clock=FakeTime().clock, sleep=FakeTime().sleep)

    code = main(["watch", "d-1"], runtime)

    assert code == 1
    lines = runtime.stdout.getvalue().splitlines()
    assert lines[1].startswith("[  0m00s] CANCELED    3/3 [####################] queued 0, in-progress 0, succeeded 1, "
                               "failed 1")
    assert lines[2:] == [
        "  robot-01                         SUCCEEDED",
        ("  robot-02                         FAILED       com.vlaedge.Inference errored while starting; rolled back "
        "[COMPONENT_BROKEN]"),
        "  robot-03                         CANCELED",
        "deployment d-1 did NOT succeed: the rollout was aborted (abort criteria met, or canceled)",
    ]


def test_watching_stops_at_its_timeout_and_says_how_to_go_on(fleet: Fleet) -> None:
    iot = fleet.stub("iot")
    _deployment(fleet)
    _devices(fleet)
    for _ in range(3):
        _job(iot, queued=1, succeeded=2)
        _deployment(fleet)
    _job(iot, queued=1, succeeded=2)
    _outcome(fleet, "robot-01", "SUCCEEDED")
    _outcome(fleet, "robot-02", "SUCCEEDED")
    fleet.gg.add_response("list_effective_deployments", {"effectiveDeployments": []}, {"coreDeviceThingName": "robot-03"})
    time = FakeTime()
    runtime = fleet.runtime(clock=time.clock, sleep=time.sleep)

    code = main(["watch", "d-1", "--poll", "10", "--timeout", "30", "--json"], runtime)

    assert code == 1
    import json

    result = json.loads(runtime.stdout.getvalue())
    assert result["finished"] is False and result["ok"] is False
    assert result["message"] == "still rolling out after 30 s; go on with `vla-edge fleet watch d-1`"
    assert result["devices"][2] == {"device": "robot-03", "status": "NOT_RECEIVED",
                                    "reason": "the device has not reported this deployment (offline?)"}
    assert len(runtime.stderr.getvalue().splitlines()) >= 4  # the progress went to stderr
    iot.assert_no_pending_responses()


def test_an_unknown_deployment_is_an_error_naming_it(fleet: Fleet) -> None:
    fleet.gg.add_client_error("get_deployment", "ResourceNotFoundException", "Deployment d-x not found", 404)
    runtime = fleet.runtime()

    assert main(["watch", "d-x"], runtime) == 1
    assert "Deployment d-x not found" in runtime.stderr.getvalue()


def test_a_deployment_replaced_by_a_newer_one_does_not_count_as_succeeded(fleet: Fleet) -> None:
    iot = fleet.stub("iot")
    _deployment(fleet, "INACTIVE")
    _devices(fleet)
    _job(iot, succeeded=1, queued=2)
    for device in DEVICES:
        fleet.gg.add_response("list_effective_deployments", {"effectiveDeployments": []},
                              {"coreDeviceThingName": device})
    runtime = fleet.runtime(clock=FakeTime().clock, sleep=FakeTime().sleep)

    assert main(["watch", "d-1"], runtime) == 1
    assert runtime.stdout.getvalue().endswith(
        "deployment d-1 did NOT succeed: a newer deployment to the same target replaced this one (it is INACTIVE)\n")
