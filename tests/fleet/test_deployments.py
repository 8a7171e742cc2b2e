"""``vla-edge fleet deploy``: thing groups on moto, the exact create_deployment request on a stubbed greengrassv2."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from support.fleet import Fleet, group_arn, stub_recipe

from vla_edge.fleet.cli import main

NOW = datetime(2026, 1, 1, tzinfo=UTC)
UPDATER_MERGE = {"merge": json.dumps({"model": {"source": "image"}})}
RUNNING = {
    "com.vlaedge.Camera": {"componentVersion": "0.1.2"},
    "com.vlaedge.Actuator": {"componentVersion": "0.1.2", "runWith": {"posixUser": "ggc_user:dialout"}},
    "com.vlaedge.ModelUpdater": {"componentVersion": "0.1.1", "configurationUpdate": UPDATER_MERGE},
    "com.vlaedge.Inference": {"componentVersion": "1.0.3", "configurationUpdate": {"merge": '{"device": "cuda"}'}},
}
DEFAULT_JOB = {
    "jobExecutionsRolloutConfig": {"exponentialRate": {
        "baseRatePerMinute": 5, "incrementFactor": 2.0, "rateIncreaseCriteria": {"numberOfSucceededThings": 5}}},
    "abortConfig": {"criteriaList": [{"failureType": "ALL", "action": "CANCEL", "thresholdPercentage": 10.0,
                                      "minNumberOfExecutedThings": 5}]},
    "timeoutConfig": {"inProgressTimeoutInMinutes": 60},
}
DEFAULT_POLICIES = {
    "failureHandlingPolicy": "ROLLBACK",
    "componentUpdatePolicy": {"action": "NOTIFY_COMPONENTS", "timeoutInSeconds": 120},
    "configurationValidationPolicy": {"timeoutInSeconds": 30},
}


def _group(fleet: Fleet, name: str = "robots") -> str:
    return fleet.client("iot").create_thing_group(thingGroupName=name)["thingGroupArn"]


def _latest(fleet: Fleet, target: str, components: dict | None) -> None:
    if components is None:
        fleet.gg.add_response("list_deployments", {"deployments": []}, {"targetArn": target, "historyFilter": "LATEST_ONLY"})
        return
    fleet.gg.add_response("list_deployments", {"deployments": [{"deploymentId": "d-old", "targetArn": target}]},
                          {"targetArn": target, "historyFilter": "LATEST_ONLY"})
    fleet.gg.add_response("get_deployment", {"deploymentId": "d-old", "targetArn": target, "deploymentStatus": "ACTIVE",
                                             "components": components}, {"deploymentId": "d-old"})


def _created(fleet: Fleet, expected: dict) -> None:
    fleet.gg.add_response("create_deployment", {"deploymentId": "d-new", "iotJobId": "job-new"}, expected)


def test_deploy_keeps_the_groups_components_and_sends_the_default_rollout(fleet: Fleet) -> None:
    target = _group(fleet)
    assert target == group_arn("robots")
    _latest(fleet, target, RUNNING)
    stub_recipe(fleet.gg, "com.vlaedge.Actuator", "0.1.2")
    stub_recipe(fleet.gg, "com.vlaedge.Camera", "0.1.2")
    stub_recipe(fleet.gg, "com.vlaedge.ModelUpdater", "0.1.1")
    _created(fleet, {
        "targetArn": target,
        "deploymentName": "vla-edge robots: com.vlaedge.Inference=1.0.4",
        "components": {**RUNNING, "com.vlaedge.Inference": {
            "componentVersion": "1.0.4", "configurationUpdate": {"merge": '{"device": "cuda"}'}}},
        "iotJobConfiguration": DEFAULT_JOB,
        "deploymentPolicies": DEFAULT_POLICIES,
    })
    runtime = fleet.runtime()

    code = main(["deploy", "--thing-group", "robots", "--component", "com.vlaedge.Inference=1.0.4"], runtime)

    assert code == 0, runtime.stderr.getvalue()
    assert runtime.stdout.getvalue() == "deployment d-new created; follow it with: vla-edge fleet watch d-new\n"
    fleet.gg.assert_no_pending_responses()


def test_every_rollout_setting_has_a_flag(fleet: Fleet) -> None:
    target = _group(fleet)
    _created(fleet, {
        "targetArn": target,
        "deploymentName": "model-only canary",
        "components": {"com.vlaedge.ModelUpdater": {
            "componentVersion": "0.1.1", "configurationUpdate": {"merge": '{"keepPrevious": 3}'}}},
        "iotJobConfiguration": {
            "jobExecutionsRolloutConfig": {
                "exponentialRate": {"baseRatePerMinute": 2, "incrementFactor": 1.5,
                                    "rateIncreaseCriteria": {"numberOfSucceededThings": 3}},
                "maximumPerMinute": 50},
            "abortConfig": {"criteriaList": [{"failureType": "FAILED", "action": "CANCEL", "thresholdPercentage": 25.0,
                                              "minNumberOfExecutedThings": 10}]},
            "timeoutConfig": {"inProgressTimeoutInMinutes": 30}},
        "deploymentPolicies": {
            "failureHandlingPolicy": "DO_NOTHING",
            "componentUpdatePolicy": {"action": "SKIP_NOTIFY_COMPONENTS", "timeoutInSeconds": 60},
            "configurationValidationPolicy": {"timeoutInSeconds": 45}},
    })
    runtime = fleet.runtime()

    code = main(["deploy", "--thing-group", "robots", "--component", "com.vlaedge.ModelUpdater=0.1.1",
                 "--merge-config", 'com.vlaedge.ModelUpdater={"keepPrevious": 3}', "--replace",
                 "--rollout-rate", "2", "--rollout-increment", "1.5", "--rollout-increase-after", "3",
                 "--rollout-max-rate", "50", "--abort-threshold", "25", "--abort-min-devices", "10",
                 "--abort-on", "FAILED", "--device-timeout", "30", "--failure-handling", "DO_NOTHING",
                 "--skip-notify", "--notify-timeout", "60", "--validation-timeout", "45",
                 "--deployment-name", "model-only canary", "--json"], runtime)

    assert code == 0, runtime.stderr.getvalue()
    assert json.loads(runtime.stdout.getvalue())["deploymentId"] == "d-new"
    fleet.gg.assert_no_pending_responses()


def test_a_group_without_deployments_gets_just_the_named_components(fleet: Fleet) -> None:
    target = _group(fleet)
    _latest(fleet, target, None)
    _created(fleet, {"targetArn": target, "deploymentName": "vla-edge robots: com.vlaedge.Inference=1.0.0",
                     "components": {"com.vlaedge.Inference": {"componentVersion": "1.0.0"}},
                     "iotJobConfiguration": DEFAULT_JOB, "deploymentPolicies": DEFAULT_POLICIES})

    assert main(["deploy", "--thing-group", "robots", "--component", "com.vlaedge.Inference=1.0.0"], fleet.runtime()) == 0
    fleet.gg.assert_no_pending_responses()


def test_an_unknown_thing_group_is_named_and_nothing_is_deployed(fleet: Fleet) -> None:
    runtime = fleet.runtime()

    code = main(["deploy", "--thing-group", "robtos", "--component", "com.vlaedge.Inference=1.0.4"], runtime)

    assert code == 1
    assert runtime.stderr.getvalue().startswith(
        "vla-edge fleet deploy: there is no thing group 'robtos' in us-east-1; check --thing-group and --region")
    fleet.gg.assert_no_pending_responses()


def test_a_denied_deployment_names_the_missing_iam_action(fleet: Fleet) -> None:
    target = _group(fleet)
    _latest(fleet, target, None)
    fleet.gg.add_client_error("create_deployment", "AccessDeniedException",
                              "User: arn:aws:iam::123456789012:user/ops is not authorized to perform: "
                              "greengrass:CreateDeployment", 403)
    runtime = fleet.runtime()

    code = main(["deploy", "--thing-group", "robots", "--component", "com.vlaedge.Inference=1.0.4"], runtime)

    assert code == 1
    message = runtime.stderr.getvalue()
    assert message.startswith("vla-edge fleet deploy: AWS denied greengrass:CreateDeployment (AccessDeniedException")
    assert 'needs "greengrass:CreateDeployment" (see docs/iam.md' in message


def test_bad_arguments_exit_2_with_one_line(fleet: Fleet) -> None:
    for argv, expected in [
        (["deploy", "--thing-group", "robots", "--component", "com.vlaedge.Inference"], "expected NAME=VERSION"),
        (["deploy", "--thing-group", "robots", "--component", "com.vlaedge.Inference=1.0"], "MAJOR.MINOR.PATCH"),
        (["deploy", "--thing-group", "robots", "--component", "c=1.0.0", "--abort-threshold", "0"], "--abort-threshold"),
        (["deploy", "--component", "c=1.0.0"], "the following arguments are required: --thing-group"),
        (["deploy", "--thing-group", "g", "--component", "c=1.0.0", "--merge-config", "d={}"], "--merge-config"),
    ]:
        runtime = fleet.runtime()
        code = main(argv, runtime)
        assert (code, expected in runtime.stderr.getvalue()) == (2, True), (argv, runtime.stderr.getvalue())
        assert runtime.stderr.getvalue().count("\n") == 1


def test_a_version_another_component_of_the_group_cannot_accept_is_refused_before_deploying(fleet: Fleet) -> None:
    target = _group(fleet)
    _latest(fleet, target, {"com.vlaedge.Suite": {"componentVersion": "0.1.0"},
                            "aws.greengrass.Nucleus": {"componentVersion": "2.14.0"}})
    stub_recipe(fleet.gg, "com.vlaedge.Suite", "0.1.0", {"com.vlaedge.Inference": ">=0.1.0 <0.2.0",
                                                         "com.vlaedge.Camera": ">=0.1.0 <0.2.0"})
    runtime = fleet.runtime()

    code = main(["deploy", "--thing-group", "robots", "--component", "com.vlaedge.Inference=1.0.4"], runtime)

    assert code == 1
    assert runtime.stderr.getvalue().splitlines()[-1].startswith(
        "vla-edge fleet deploy: the devices could not resolve this deployment: com.vlaedge.Suite 0.1.0 requires "
        "com.vlaedge.Inference >=0.1.0 <0.2.0, not 1.0.4.")
    fleet.gg.assert_no_pending_responses()  # no create_deployment


def test_version_ranges_as_greengrass_reads_them() -> None:
    from vla_edge.fleet.dependencies import satisfies

    assert satisfies("0.1.5", ">=0.1.0 <0.2.0") and not satisfies("0.2.0", ">=0.1.0 <0.2.0")
    assert satisfies("1.9.0", "^1.2.0") and not satisfies("0.2.0", "^0.1.0")
    assert satisfies("1.2.9", "~1.2.0") and not satisfies("1.3.0", "~1.2.0")
    assert satisfies("2.1.0", "1.0.0 || >=2.0.0") and satisfies("3.0.0", "*")
    assert satisfies("1.0.0", ">=1.0.0-rc.1") is None  # not understood: warned about, not refused


def test_a_new_configuration_merge_is_combined_with_the_groups_previous_one(fleet: Fleet) -> None:
    target = _group(fleet)
    _latest(fleet, target, {"com.vlaedge.Inference": {
        "componentVersion": "1.0.3", "configurationUpdate": {"merge": '{"cameras": ["front"], "device": "cuda"}'}}})
    _created(fleet, {"targetArn": target, "deploymentName": "vla-edge robots: com.vlaedge.Inference=1.0.4",
                     "components": {"com.vlaedge.Inference": {"componentVersion": "1.0.4", "configurationUpdate": {
                         "merge": '{"cameras": ["top", "wrist"], "device": "cuda", "torchThreads": 2}'}}},
                     "iotJobConfiguration": DEFAULT_JOB, "deploymentPolicies": DEFAULT_POLICIES})
    runtime = fleet.runtime()

    code = main(["deploy", "--thing-group", "robots", "--component", "com.vlaedge.Inference=1.0.4", "--merge-config",
                 'com.vlaedge.Inference={"torchThreads": 2, "cameras": ["top", "wrist"]}'], runtime)

    assert code == 0, runtime.stderr.getvalue()
    fleet.gg.assert_no_pending_responses()
