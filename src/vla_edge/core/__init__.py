"""A local Greengrass core for development and CI: the real IPC protocol on a Unix socket.

Components run unmodified against it (awsiotsdk's ``GreengrassCoreIPCClientV2``),
with recipe ``accessControl`` enforced, so what passes here behaves the same on a
device. Start one with ``vla-edge core serve`` or :class:`LocalCore`; get a
component's environment with ``vla-edge core env`` or :func:`component_environment`;
deploy a configuration change to a running one with ``vla-edge core deploy --update-config``
or :func:`deploy_configuration`.

Nothing is imported eagerly: ``import vla_edge.core`` is free until a name is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vla_edge.core.control import deploy_configuration
    from vla_edge.core.deployments import DeploymentResult
    from vla_edge.core.operations import ValidityReport
    from vla_edge.core.protocol import Limits
    from vla_edge.core.server import MONITOR_COMPONENT, LocalCore, component_environment, read_core_file
    from vla_edge.core.updates import UpdateOutcome, UpdateResponse

__all__ = ["LocalCore", "Limits", "ValidityReport", "UpdateOutcome", "UpdateResponse", "MONITOR_COMPONENT",
           "component_environment", "read_core_file", "deploy_configuration", "DeploymentResult"]

_HOMES = {
    "LocalCore": "vla_edge.core.server",
    "MONITOR_COMPONENT": "vla_edge.core.server",
    "component_environment": "vla_edge.core.server",
    "read_core_file": "vla_edge.core.server",
    "Limits": "vla_edge.core.protocol",
    "ValidityReport": "vla_edge.core.operations",
    "UpdateOutcome": "vla_edge.core.updates",
    "UpdateResponse": "vla_edge.core.updates",
    "deploy_configuration": "vla_edge.core.control",
    "DeploymentResult": "vla_edge.core.deployments",
}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        import importlib

        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'vla_edge.core' has no attribute {name!r}")
