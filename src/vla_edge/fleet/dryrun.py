"""``--dry-run``: clients that print each AWS call, with its parameters as JSON, instead of making it.

A dry run has to get through the whole flow (push, publish, deploy) without credentials,
so calls whose answers later steps need get placeholder answers (an account id
``123456789012``, an image digest of zeros, a deployment id ``dry-run-deployment``), and
calls that would only change something answer nothing. Parameters are still validated
against botocore's service model, so a dry run fails where the real call would be
rejected for its shape.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TextIO

log = logging.getLogger(__name__)

ACCOUNT = "123456789012"
DIGEST = "sha256:" + "0" * 64
DEPLOYMENT_ID = "dry-run-deployment"
JOB_ID = "dry-run-job"
_NOW = datetime(2000, 1, 1, tzinfo=UTC)

Placeholder = Callable[[dict[str, Any], str], dict[str, Any]]


def _repository(params: dict[str, Any], region: str) -> dict[str, Any]:
    name = (params.get("repositoryNames") or [params.get("repositoryName", "repository")])[0]
    uri = f"{ACCOUNT}.dkr.ecr.{region}.amazonaws.com/{name}"
    repo = {"repositoryName": name, "repositoryUri": uri, "registryId": ACCOUNT,
            "repositoryArn": f"arn:aws:ecr:{region}:{ACCOUNT}:repository/{name}", "imageTagMutability": "MUTABLE"}
    return {"repositories": [repo]} if "repositoryNames" in params else {"repository": repo}


def _component(params: dict[str, Any], region: str) -> dict[str, Any]:
    import yaml

    recipe = yaml.safe_load(params["inlineRecipe"])
    name, version = recipe["ComponentName"], recipe["ComponentVersion"]
    return {"arn": f"arn:aws:greengrass:{region}:{ACCOUNT}:components:{name}:versions:{version}",
            "componentName": name, "componentVersion": version, "creationTimestamp": _NOW,
            "status": {"componentState": "DEPLOYABLE"}}


PLACEHOLDERS: dict[str, Placeholder] = {
    "GetCallerIdentity": lambda p, r: {"Account": ACCOUNT, "Arn": f"arn:aws:iam::{ACCOUNT}:user/dry-run", "UserId": "DRYRUN"},
    "DescribeRepositories": _repository,
    "CreateRepository": _repository,
    "GetAuthorizationToken": lambda p, r: {"authorizationData": [{
        "authorizationToken": base64.b64encode(b"AWS:dry-run-password").decode(),
        "proxyEndpoint": f"https://{ACCOUNT}.dkr.ecr.{r}.amazonaws.com", "expiresAt": _NOW}]},
    "DescribeImages": lambda p, r: {"imageDetails": [{
        "registryId": ACCOUNT, "repositoryName": p.get("repositoryName", ""), "imageDigest": DIGEST,
        "imageTags": [i["imageTag"] for i in p.get("imageIds", []) if "imageTag" in i]}]},
    "DescribeThingGroup": lambda p, r: {
        "thingGroupName": p["thingGroupName"], "thingGroupArn": f"arn:aws:iot:{r}:{ACCOUNT}:thinggroup/{p['thingGroupName']}"},
    "ListComponentVersions": lambda p, r: {"componentVersions": []},
    "CreateComponentVersion": _component,
    "DescribeComponent": lambda p, r: {"arn": p["arn"], "status": {"componentState": "DEPLOYABLE"}},
    "ListDeployments": lambda p, r: {"deployments": []},
    "CreateDeployment": lambda p, r: {"deploymentId": DEPLOYMENT_ID, "iotJobId": JOB_ID,
                                      "iotJobArn": f"arn:aws:iot:{r}:{ACCOUNT}:job/{JOB_ID}"},
    "GetDeployment": lambda p, r: {"deploymentId": p["deploymentId"], "deploymentStatus": "ACTIVE", "iotJobId": JOB_ID,
                                   "targetArn": f"arn:aws:iot:{r}:{ACCOUNT}:thinggroup/dry-run", "components": {}},
    "DescribeJob": lambda p, r: {"job": {"jobId": p["jobId"], "status": "IN_PROGRESS", "jobProcessDetails": {}}},
    "ListCoreDevices": lambda p, r: {"coreDevices": []},
    "GetComponent": lambda p, r: {"recipeOutputFormat": "YAML", "recipe": b"{}"},
    "CreateMultipartUpload": lambda p, r: {"UploadId": "dry-run-upload"},
    "UploadPart": lambda p, r: {"ETag": '"dry-run"'},
}


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return f"<{len(value)} bytes>"
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def _is_text(value: bytes) -> bool:
    try:
        return "\n" in value.decode("utf-8")
    except UnicodeDecodeError:
        return False


class DryRunClient:
    """Stands in for ``boto3.client(service)``: validates, prints and records each call, sends nothing.

    ``meta`` comes from a real botocore client made with dummy credentials (making one sends
    no request), so method names, the service model and validation are botocore's own.
    """

    def __init__(self, service: str, region: str, out: TextIO) -> None:
        import boto3

        self._model_client = boto3.session.Session(
            aws_access_key_id="dry-run", aws_secret_access_key="dry-run", region_name=region
        ).client(service)
        self.meta = self._model_client.meta
        self.service = service
        self.region = region
        self.out = out

    def __getattr__(self, method: str) -> Callable[..., dict[str, Any]]:
        operation = self.meta.method_to_api_mapping.get(method)
        if operation is None:
            raise AttributeError(f"{self.service} has no operation {method}")

        def call(**params: Any) -> dict[str, Any]:
            from botocore.validate import validate_parameters

            validate_parameters(params, self.meta.service_model.operation_model(operation).input_shape)
            texts = {k: v.decode() for k, v in params.items() if isinstance(v, bytes) and _is_text(v)}
            printable = {k: (f"<{len(v)} bytes, below>" if k in texts else v) for k, v in params.items()}
            shown = json.dumps(printable, indent=2, sort_keys=False, default=_jsonable)
            self.out.write(f"[dry-run] {self.service}.{method} ({operation})\n{shown}\n")
            for key, text in texts.items():
                self.out.write(f"{key}:\n" + "".join(f"  | {line}\n" for line in text.splitlines()))
            self.out.flush()
            placeholder = PLACEHOLDERS.get(operation)
            return placeholder(params, self.region) if placeholder else {}

        return call
