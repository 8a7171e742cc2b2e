"""Errors of ``vla-edge fleet``: every botocore error is converted into one of these at the client boundary.

They derive from :class:`vla_edge.errors.VlaEdgeError` like every error vla-edge raises,
and their messages say what to do (which IAM action is missing, which flag to pass).
"""

from __future__ import annotations

from vla_edge.errors import VlaEdgeError


class FleetError(VlaEdgeError):
    """A fleet operation failed; ``code`` is the AWS error code when AWS said no."""

    def __init__(self, message: str, code: str = "") -> None:
        super().__init__(message)
        self.code = code


class CredentialsMissing(FleetError):
    """No AWS credentials were found (profile, environment, instance role...)."""


class PermissionDenied(FleetError):
    """AWS refused a call for lack of an IAM permission; ``action`` names it (e.g. ``greengrass:CreateDeployment``)."""

    def __init__(self, message: str, code: str = "", action: str = "") -> None:
        super().__init__(message, code)
        self.action = action


class NotFound(FleetError):
    """The named resource (thing group, repository, image tag, component, deployment) does not exist."""


class ComponentRejected(FleetError):
    """Greengrass could not make a component version deployable (recipe error, missing artifact)."""


class DockerUnavailable(FleetError):
    """No Docker engine answers; the commands to run by hand have been printed instead."""


class DockerFailed(FleetError):
    """A docker command exited with an error."""
