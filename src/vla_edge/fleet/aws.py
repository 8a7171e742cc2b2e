"""AWS clients for the fleet commands, with every botocore error turned into a :class:`FleetError`.

Why a wrapper rather than ``try`` around each call: an operator who lacks one IAM action
should be told which one, whatever call it was, and the tests (and ``--dry-run``) need one
place where every call passes. :class:`Aws` hands out :class:`GuardedClient` objects; each
call made through one is converted at this boundary (``raise ... from exc``), recorded in
:attr:`Aws.calls`, and named by its IAM action (:func:`iam_action`), which
``docs/iam/operator-policy.json`` must grant.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

from vla_edge.fleet.errors import (
    CredentialsMissing,
    FleetError,
    NotFound,
    PermissionDenied,
)

log = logging.getLogger(__name__)

IAM_PREFIX = {"greengrassv2": "greengrass", "ecr": "ecr", "iot": "iot", "s3": "s3", "sts": "sts"}
"""IAM service prefix of each boto3 service name (they differ for Greengrass v2)."""

_S3_ACTIONS = {
    "HeadObject": "GetObject",
    "ListObjectsV2": "ListBucket",
    "HeadBucket": "ListBucket",
    "CreateMultipartUpload": "PutObject",
    "UploadPart": "PutObject",
    "CompleteMultipartUpload": "PutObject",
    "AbortMultipartUpload": "AbortMultipartUpload",
}
_DENIED = {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "UnauthorizedException", "Forbidden"}
_BAD_CREDENTIALS = {
    "UnrecognizedClientException", "InvalidClientTokenId", "ExpiredToken", "ExpiredTokenException",
    "InvalidSignatureException", "SignatureDoesNotMatch",
}  # fmt: skip
_NOT_FOUND = {
    "ResourceNotFoundException", "RepositoryNotFoundException", "ImageNotFoundException", "NoSuchKey",
    "NoSuchBucket", "NotFound", "404",
}  # fmt: skip


def iam_action(service: str, operation: str) -> str:
    """The IAM action an API operation needs, e.g. ``("greengrassv2", "CreateDeployment")`` -> ``greengrass:CreateDeployment``."""
    prefix = IAM_PREFIX.get(service, service)
    if service == "s3":
        operation = _S3_ACTIONS.get(operation, operation)
    return f"{prefix}:{operation}"


def convert_error(exc: Exception, service: str, operation: str) -> FleetError:
    """One botocore exception as the FleetError that says what to do about it."""
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        NoCredentialsError,
        NoRegionError,
        PartialCredentialsError,
        ProfileNotFound,
    )

    action = iam_action(service, operation)
    if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
        return CredentialsMissing(
            f"no AWS credentials for {action}: run `aws configure` (or `aws sso login`), pass --profile, or set "
            "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY; --dry-run shows the calls without credentials"
        )
    if isinstance(exc, ProfileNotFound):
        return CredentialsMissing(f"{exc}; list the profiles with `aws configure list-profiles`")
    if isinstance(exc, NoRegionError):
        return FleetError("no AWS region: pass --region (or set AWS_REGION / the profile's region)")
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        message = str(error.get("Message", "")) or str(exc)
        if code in _DENIED:
            return PermissionDenied(
                f"AWS denied {action} ({code}: {message}); the operator's IAM policy needs \"{action}\" "
                "(see docs/iam.md and docs/iam/operator-policy.json)",
                code,
                action,
            )
        if code in _BAD_CREDENTIALS:
            return CredentialsMissing(f"AWS did not accept the credentials for {action} ({code}: {message}); "
                                      "refresh them (aws sso login, new session token) or pick another --profile", code)
        if code in _NOT_FOUND:
            return NotFound(f"{service} {operation}: {message} ({code})", code)
        return FleetError(f"{service} {operation} failed ({code}: {message})", code)
    if isinstance(exc, BotoCoreError):
        return FleetError(f"{service} {operation} failed: {exc}; check the network and --region")
    return FleetError(f"{service} {operation} failed: {exc}")


@dataclass(frozen=True)
class Call:
    """One API call made (or, in dry-run, shown) through a guarded client."""

    service: str
    operation: str
    params: dict[str, Any]

    @property
    def action(self) -> str:
        return iam_action(self.service, self.operation)


class GuardedClient:
    """A boto3 client (or a dry-run stand-in) whose calls raise only FleetError, and are recorded."""

    def __init__(self, client: Any, service: str, record: Callable[[Call], None]) -> None:
        self._client = client
        self._service = service
        self._record = record
        self.meta = client.meta

    def __getattr__(self, method: str) -> Callable[..., Any]:
        target = getattr(self._client, method)
        operation = self._client.meta.method_to_api_mapping.get(method)
        if operation is None or not callable(target):
            return target

        def call(**params: Any) -> Any:
            self._record(Call(self._service, operation, params))
            log.debug("%s.%s %s", self._service, method, params)
            try:
                return target(**params)
            except FleetError:
                raise
            except Exception as exc:
                from botocore.exceptions import BotoCoreError, ClientError

                if isinstance(exc, (BotoCoreError, ClientError)):
                    raise convert_error(exc, self._service, operation) from exc
                raise

        return call


@dataclass
class Aws:
    """Where the fleet commands reach AWS: region, profile, dry-run, and the clients made so far.

    ``clients`` may be given (tests pass moto or Stubber clients); any other service gets a
    client from a boto3 session (``profile``, ``region``) made on first use, or in dry-run a
    :class:`~vla_edge.fleet.dryrun.DryRunClient` that prints its calls to ``out``.
    """

    region: str | None = None
    profile: str | None = None
    dry_run: bool = False
    out: TextIO = field(default_factory=lambda: sys.stdout)
    clients: dict[str, Any] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    _guarded: dict[str, GuardedClient] = field(default_factory=dict, repr=False)
    _session: Any = field(default=None, repr=False)
    _account: str | None = field(default=None, repr=False)

    def client(self, service: str) -> GuardedClient:
        if service not in self._guarded:
            raw = self.clients.get(service)
            if raw is None:
                raw = self._make(service)
            self._guarded[service] = GuardedClient(raw, service, self.calls.append)
        return self._guarded[service]

    def _make(self, service: str) -> Any:
        if self.dry_run:
            from vla_edge.fleet.dryrun import DryRunClient

            return DryRunClient(service, self.resolved_region(), self.out)
        from botocore.config import Config

        # Standard retries: a watch polls for hours, and throttling must not end it.
        config = Config(retries={"mode": "standard", "max_attempts": 8}, user_agent_extra="vla-edge-fleet")
        return self.session().client(service, region_name=self.resolved_region(), config=config)

    def session(self) -> Any:
        if self._session is None:
            import boto3
            from botocore.exceptions import ProfileNotFound

            try:
                self._session = boto3.Session(profile_name=self.profile, region_name=self.region)
            except ProfileNotFound as exc:
                raise convert_error(exc, "sts", "GetCallerIdentity") from exc
        return self._session

    def resolved_region(self) -> str:
        """``--region``, else the profile's or environment's; a clear error when there is none."""
        if self.region:
            return self.region
        for client in self.clients.values():
            if getattr(client, "meta", None) is not None and client.meta.region_name:
                self.region = str(client.meta.region_name)
                return self.region
        if self.dry_run:
            import os

            self.region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
            return self.region
        region = self.session().region_name
        if not region:
            raise FleetError("no AWS region: pass --region (or set AWS_REGION, or the profile's region)")
        self.region = str(region)
        return self.region

    def account_id(self) -> str:
        """The caller's account (for component ARNs); sts:GetCallerIdentity needs no permission."""
        if self._account is None:
            self._account = str(self.client("sts").get_caller_identity()["Account"])
        return self._account

    def actions(self) -> list[str]:
        """The IAM actions of every call made so far, sorted and without repeats."""
        return sorted({call.action for call in self.calls})


def is_not_found(exc: FleetError, *codes: str) -> bool:
    """Whether ``exc`` is AWS saying the resource is absent (optionally: with one of ``codes``)."""
    return isinstance(exc, NotFound) and (not codes or exc.code in codes)
