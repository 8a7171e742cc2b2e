"""Will the devices be able to resolve the deployment? The version requirements of the group's components.

A component a deployment names must also satisfy the version requirement of every other
component that depends on it (``com.vlaedge.Suite`` requires ``com.vlaedge.Inference
>=0.1.0 <0.2.0``; the inference requires ``com.vlaedge.ModelUpdater`` in a range). Greengrass
finds a conflict only on the device, where every device of the group then fails the
deployment. So before deploying, the recipes of the group's other vla-edge components are
read and each new version checked against their requirements (npm-style ranges, as
Greengrass uses: ``>=1.0.0 <2.0.0``, ``^1.2.0``, ``~1.2.0``, ``1.2.3``, ``*``, ``a || b``).
"""

from __future__ import annotations

import logging
import re
from typing import Any

from vla_edge.fleet.aws import Aws
from vla_edge.fleet.components import component_arn
from vla_edge.fleet.errors import FleetError, NotFound

log = logging.getLogger(__name__)

OWN_PREFIX = "com.vlaedge."
_VERSION = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)")
_COMPARATOR = re.compile(r"^(>=|<=|>|<|=|\^|~)?\s*v?(\d+)\.(\d+)\.(\d+)$")

Version = tuple[int, int, int]


def parse_version(text: str) -> Version:
    match = _VERSION.match(text)
    if not match:
        raise ValueError(f"not a version: {text!r}")
    return int(match[1]), int(match[2]), int(match[3])


def satisfies(version: str, requirement: str) -> bool | None:
    """Whether ``version`` meets ``requirement``; None when the requirement is not understood."""
    value = parse_version(version)
    alternatives = []
    for alternative in requirement.split("||"):
        comparators = alternative.split()
        if not comparators or comparators == ["*"]:
            alternatives.append(True)
            continue
        results = [_compare(value, c) for c in comparators]
        if any(r is None for r in results):
            return None
        alternatives.append(all(results))
    return any(alternatives)


def _compare(value: Version, comparator: str) -> bool | None:
    match = _COMPARATOR.match(comparator)
    if not match:
        return None
    op, bound = match[1] or "=", (int(match[2]), int(match[3]), int(match[4]))
    if op == "^":
        upper = (bound[0] + 1, 0, 0) if bound[0] else (0, bound[1] + 1, 0)
        return bound <= value < upper
    if op == "~":
        return bound <= value < (bound[0], bound[1] + 1, 0)
    return {">=": value >= bound, "<=": value <= bound, ">": value > bound, "<": value < bound, "=": value == bound}[op]


def requirements(aws: Aws, name: str, version: str) -> dict[str, str]:
    """The ``ComponentDependencies`` version requirements of one published component version."""
    import yaml

    arn = component_arn(aws.resolved_region(), aws.account_id(), name, version)
    recipe = yaml.safe_load(aws.client("greengrassv2").get_component(arn=arn, recipeOutputFormat="YAML")["recipe"])
    dependencies = (recipe or {}).get("ComponentDependencies") or {}
    return {dep: str(spec.get("VersionRequirement", "*")) for dep, spec in dependencies.items() if isinstance(spec, dict)}


def check_dependencies(aws: Aws, components: dict[str, Any], updated: set[str]) -> None:
    """Refuse a deployment whose new versions break a requirement of the group's other vla-edge components.

    Only this project's components (``com.vlaedge.*``) are read: their requirements are the ones
    a vla-edge rollout can break, and reading every public component's recipe would need
    permissions an operator may not have.
    """
    problems = []
    for name, spec in sorted(components.items()):
        if name in updated or not name.startswith(OWN_PREFIX):
            continue
        try:
            needs = requirements(aws, name, spec["componentVersion"])
        except NotFound:
            log.warning("cannot read %s %s's recipe to check its dependencies", name, spec["componentVersion"])
            continue
        for dependency, requirement in needs.items():
            if dependency not in updated:
                continue
            new = components[dependency]["componentVersion"]
            verdict = satisfies(new, requirement)
            if verdict is None:
                log.warning("cannot tell whether %s %s meets %s's requirement %r", dependency, new, name, requirement)
            elif not verdict:
                problems.append(f"{name} {spec['componentVersion']} requires {dependency} {requirement}, not {new}")
    if problems:
        raise FleetError("the devices could not resolve this deployment: " + "; ".join(problems) +
                         ". Publish a version in range, or also deploy a version of the dependent component that "
                         "accepts it (--component NAME=VERSION)")
