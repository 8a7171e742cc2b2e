"""Recipe ``accessControl`` policies and their evaluation, as the nucleus's AuthorizationHandler does it.

A recipe's DefaultConfiguration carries::

    accessControl:
      aws.greengrass.ipc.pubsub:             # the IPC service ("destination")
        com.example.Camera:pubsub:1:         # policy id, unique per component
          policyDescription: ...
          operations: [aws.greengrass#PublishToTopic]   # or "*" for every operation
          resources: [vla-edge/camera/+/frame]          # literal, "*" glob, MQTT + and #

A request is allowed when some policy of the calling component on that service
lists the operation (or ``*``) and a resource matching the requested one. A
denial carries the nucleus's wording, ``Principal <component> is not authorized
to perform <service>:<operation> on resource <resource>``, so logs read the same
as on a device.

Resource matching: ``*`` matches any run of characters (slashes included); a
resource whose levels contain ``+`` or ``#`` matches requested topics MQTT-style,
with the requested string's own ``+``/``#`` taken literally (so a grant of
``vla-edge/#`` allows subscribing to ``vla-edge/camera/+`` but not to ``#``);
``{iot:thingName}`` is replaced by the core's thing name.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from vla_edge.bus.semantics import topic_matches
from vla_edge.errors import ConfigurationError

PUBSUB_SERVICE = "aws.greengrass.ipc.pubsub"
ANY = "*"


@dataclass(frozen=True)
class Policy:
    """One authorization policy of one component."""

    service: str
    policy_id: str
    operations: frozenset[str]
    resources: tuple[str, ...]
    description: str = ""


def parse_access_control(component: str, configuration: Mapping[str, Any]) -> list[Policy]:
    """The policies in ``configuration["accessControl"]``; a malformed block is a ConfigurationError."""
    block = configuration.get("accessControl")
    if block is None:
        return []
    where = f"component {component}: accessControl"
    if not isinstance(block, Mapping):
        raise ConfigurationError(f"{where} must be a mapping of IPC service -> policies, got {type(block).__name__}")
    policies: list[Policy] = []
    for service, by_id in block.items():
        if not isinstance(by_id, Mapping):
            raise ConfigurationError(f"{where}.{service} must be a mapping of policy id -> policy")
        for policy_id, body in by_id.items():
            here = f"{where}.{service}.{policy_id}"
            if not isinstance(body, Mapping):
                raise ConfigurationError(f"{here} must be a mapping with 'operations' and 'resources'")
            operations = _string_list(body.get("operations"), f"{here}.operations")
            resources = _string_list(body.get("resources", []), f"{here}.resources")
            if not operations:
                raise ConfigurationError(f"{here}.operations is empty: list e.g. aws.greengrass#PublishToTopic or '*'")
            policies.append(Policy(str(service), str(policy_id), frozenset(operations), tuple(resources),
                                   str(body.get("policyDescription", ""))))
    return policies


def _string_list(value: Any, where: str) -> list[str]:
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ConfigurationError(f"{where} must be a list of strings, got {value!r}")
    return value


class AccessControl:
    """Every component's policies; :meth:`is_authorized` is the only question asked of it."""

    def __init__(self, thing_name: str) -> None:
        self.thing_name = thing_name
        self._policies: dict[str, list[Policy]] = {}

    def set_policies(self, component: str, policies: Iterable[Policy]) -> None:
        self._policies[component] = list(policies)

    def policies(self, component: str) -> list[Policy]:
        return list(self._policies.get(component, ()))

    def is_authorized(self, principal: str, service: str, operation: str, resource: str) -> bool:
        for policy in self._policies.get(principal, ()):
            if policy.service != service:
                continue
            if operation not in policy.operations and ANY not in policy.operations:
                continue
            for pattern in policy.resources:
                if resource_matches(pattern.replace("{iot:thingName}", self.thing_name), resource):
                    return True
        return False

    @staticmethod
    def denial(principal: str, service: str, operation: str, resource: str) -> str:
        """The nucleus's wording of a denied request."""
        return f"Principal {principal} is not authorized to perform {service}:{operation} on resource {resource}"


def resource_matches(pattern: str, resource: str) -> bool:
    """Does a policy resource ``pattern`` allow the requested ``resource``? (see the module docstring)"""
    if pattern == ANY or pattern == resource:
        return True
    if "*" in pattern and _glob(pattern).fullmatch(resource):
        return True
    levels = pattern.split("/")
    if any(level in ("+", "#") for level in levels):
        if "#" in levels and levels.index("#") != len(levels) - 1:
            return False
        return topic_matches(pattern, resource)
    return False


@lru_cache(maxsize=1024)
def _glob(pattern: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(part) for part in pattern.split("*")), re.DOTALL)
