"""Thing-group deployments with a staged rollout, abort criteria, timeouts and rollback.

Why merge: a deployment to a thing group *replaces* the group's previous one: components
it does not list are removed from every device in the group. So the new deployment starts
from the components (versions, configuration updates, runWith) of the latest deployment
for that group and changes only the ones asked for.

The defaults are for robots (see docs/fleet.md): roll out to 5 devices a minute, doubling
after every 5 successes; cancel the rollout once 10 % of at least 5 finished devices
failed; a device that has not finished in 60 minutes counts as timed out; a device whose
deployment fails goes back to its previous components (ROLLBACK); and components are
notified before they restart (NOTIFY_COMPONENTS), so the model-updater can hold the update
while the arm executes a plan.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from vla_edge.fleet.aws import Aws
from vla_edge.fleet.dependencies import check_dependencies
from vla_edge.fleet.errors import FleetError, NotFound

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RolloutSettings:
    """What ``create_deployment`` gets besides the components; every field has a ``vla-edge fleet deploy`` flag."""

    base_rate_per_minute: int = 5
    increment_factor: float = 2.0
    rate_increase_after_succeeded: int = 5
    maximum_per_minute: int | None = None
    abort_failure_type: str = "ALL"
    abort_threshold_percent: float = 10.0
    abort_min_executed: int = 5
    in_progress_timeout_minutes: int = 60
    failure_handling: str = "ROLLBACK"
    notify_components: bool = True
    notify_timeout_s: int = 120
    config_validation_timeout_s: int = 30

    def check(self) -> RolloutSettings:
        problems = []
        if not 1 <= self.base_rate_per_minute <= 1000:
            problems.append("--rollout-rate must be 1..1000 devices per minute")
        if not 1.1 <= self.increment_factor <= 5:
            problems.append("--rollout-increment must be 1.1..5")
        if not 1 <= self.rate_increase_after_succeeded:
            problems.append("--rollout-increase-after must be at least 1")
        if self.maximum_per_minute is not None and not 1 <= self.maximum_per_minute <= 1000:
            problems.append("--rollout-max-rate must be 1..1000")
        if not 0 < self.abort_threshold_percent <= 100:
            problems.append("--abort-threshold must be a percentage above 0 and at most 100")
        if self.abort_min_executed < 1:
            problems.append("--abort-min-devices must be at least 1")
        if self.in_progress_timeout_minutes < 1:
            problems.append("--device-timeout must be at least 1 minute")
        if self.notify_timeout_s < 1 or self.config_validation_timeout_s < 1:
            problems.append("--notify-timeout and --validation-timeout must be at least 1 second")
        if problems:
            raise FleetError("; ".join(problems))
        return self

    def job_configuration(self) -> dict[str, Any]:
        rollout: dict[str, Any] = {
            "exponentialRate": {
                "baseRatePerMinute": self.base_rate_per_minute,
                "incrementFactor": self.increment_factor,
                "rateIncreaseCriteria": {"numberOfSucceededThings": self.rate_increase_after_succeeded},
            }
        }
        if self.maximum_per_minute is not None:
            rollout["maximumPerMinute"] = self.maximum_per_minute
        return {
            "jobExecutionsRolloutConfig": rollout,
            "abortConfig": {"criteriaList": [{
                "failureType": self.abort_failure_type,
                "action": "CANCEL",
                "thresholdPercentage": self.abort_threshold_percent,
                "minNumberOfExecutedThings": self.abort_min_executed,
            }]},
            "timeoutConfig": {"inProgressTimeoutInMinutes": self.in_progress_timeout_minutes},
        }

    def policies(self) -> dict[str, Any]:
        return {
            "failureHandlingPolicy": self.failure_handling,
            "componentUpdatePolicy": {
                "action": "NOTIFY_COMPONENTS" if self.notify_components else "SKIP_NOTIFY_COMPONENTS",
                "timeoutInSeconds": self.notify_timeout_s,
            },
            "configurationValidationPolicy": {"timeoutInSeconds": self.config_validation_timeout_s},
        }


def thing_group_arn(aws: Aws, name: str) -> str:
    try:
        return str(aws.client("iot").describe_thing_group(thingGroupName=name)["thingGroupArn"])
    except NotFound as exc:
        raise NotFound(f"there is no thing group {name!r} in {aws.resolved_region()}; check --thing-group and "
                       "--region (aws iot list-thing-groups)", exc.code) from exc


def latest_deployment(aws: Aws, target_arn: str) -> dict[str, Any] | None:
    """The latest deployment for ``target_arn`` (``get_deployment``'s answer), None when there is none."""
    gg = aws.client("greengrassv2")
    listed = gg.list_deployments(targetArn=target_arn, historyFilter="LATEST_ONLY").get("deployments", [])
    if not listed:
        return None
    return dict(gg.get_deployment(deploymentId=listed[0]["deploymentId"]))


def merge_components(current: dict[str, Any], updates: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """``current`` with ``updates`` applied per component.

    A new version keeps the component's runWith and configuration update. A new configuration
    merge is combined with the previous one (new values win) rather than replacing it: devices
    keep what earlier merges set, but a device that joins the group later gets only this
    deployment's configuration update, which must therefore still carry the earlier values.
    """
    merged = {name: dict(spec) for name, spec in current.items()}
    for name, update in updates.items():
        previous = merged.get(name, {})
        combined = {**previous, **update}
        old, new = previous.get("configurationUpdate"), update.get("configurationUpdate")
        if old and new:
            values = _deep_merge(json.loads(old.get("merge") or "{}"), json.loads(new.get("merge") or "{}"))
            combined["configurationUpdate"] = {**old, **new, "merge": json.dumps(values, sort_keys=True)}
        merged[name] = combined
    return merged


def _deep_merge(base: dict[str, Any], change: dict[str, Any]) -> dict[str, Any]:
    """Greengrass's MERGE semantics: objects merge key by key, anything else is replaced."""
    result = dict(base)
    for key, value in change.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = _deep_merge(result[key], value)
        else:
            result[key] = value
    return result


def configuration_merge(values: dict[str, Any]) -> dict[str, Any]:
    """A ``configurationUpdate`` that merges ``values`` into the component's configuration."""
    return {"merge": json.dumps(values, sort_keys=True)}


def plan_deployment(
    aws: Aws,
    thing_group: str,
    updates: dict[str, dict[str, Any]],
    settings: RolloutSettings,
    name: str | None = None,
    merge: bool = True,
    target_arn: str | None = None,
    previous: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``create_deployment`` request that rolls ``updates`` out to ``thing_group``.

    ``target_arn`` and ``previous`` (the latest deployment, ``{}`` for none) save the
    look-ups when the caller made them already.
    """
    settings.check()
    target = target_arn or thing_group_arn(aws, thing_group)
    current: dict[str, Any] = {}
    if merge:
        if previous is None:
            previous = latest_deployment(aws, target)
        if previous:
            current = previous.get("components") or {}
            if previous.get("deploymentStatus") in ("CANCELED", "FAILED"):
                log.warning("the group's latest deployment %s is %s; its components are kept in the new one",
                            previous.get("deploymentId"), previous.get("deploymentStatus"))
            log.info("the group runs %s", ", ".join(f"{k} {v['componentVersion']}" for k, v in sorted(current.items())))
    components = merge_components(current, updates)
    if not components:
        raise FleetError("nothing to deploy: name at least one component (--component NAME=VERSION)")
    check_dependencies(aws, components, set(updates))
    summary = ", ".join(f"{k}={v['componentVersion']}" for k, v in sorted(updates.items()))
    return {
        "targetArn": target,
        "deploymentName": name or f"vla-edge {thing_group}: {summary}"[:256],
        "components": components,
        "iotJobConfiguration": settings.job_configuration(),
        "deploymentPolicies": settings.policies(),
    }


def create_deployment(aws: Aws, request: dict[str, Any]) -> dict[str, Any]:
    """Send the request; returns ``deploymentId``, ``iotJobId`` and ``iotJobArn``."""
    created = aws.client("greengrassv2").create_deployment(**request)
    log.info("deployment %s (IoT job %s) created for %s", created.get("deploymentId"), created.get("iotJobId"),
             request["targetArn"])
    return dict(created)
