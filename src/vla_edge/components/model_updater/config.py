"""Configuration of the model-updater component (recipe ``DefaultConfiguration`` keys, camelCase).

``model`` is the *desired* model; the store's record (``active.json`` under ``storeDir``) says
which model is active. The updater rolls the desired model out when the two differ:

* ``none`` (the default): no rollout. The recorded active model is enforced (an inference
  component that restarts with another model is told to serve it again); with nothing
  recorded, the model the inference component reports serving is adopted as active.
* ``local`` / ``artifact``: ``path`` is an absolute directory holding the model's files and
  its ``vla_edge_manifest.json``. For a Greengrass artifact, use ``{artifacts:path}`` or
  ``{artifacts:decompressedPath}/<zip name>`` (the nucleus substitutes it when
  ``interpolateComponentConfiguration`` is on in its configuration).
* ``s3``: the manifest is ``s3://bucket/prefix/vla_edge_manifest.json`` and the files lie
  beside it; credentials come from the default chain (on a device, the token exchange service).
* ``image``: the model baked into the inference container is the desired one: whatever the
  inference component reports serving is adopted and nothing is enforced.

``modelPath``, the key of earlier versions, still works: it means ``source: local`` when the
directory has a manifest; without one, the served model is adopted (as ``image``), because a
directory without a manifest cannot be verified.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from vla_edge.components.actuator.config import so101_joints
from vla_edge.components.base import ConfigModel
from vla_edge.models import MANIFEST_FILE, default_cache_dir

SourceKind = Literal["none", "local", "artifact", "s3", "image"]
THING_PLACEHOLDER = "{thingName}"
DEFAULT_IOT_TOPIC = "vla-edge/" + THING_PLACEHOLDER + "/model/status"


def so101_joint_limits() -> dict[str, tuple[float, float]]:
    """The actuator's default SO-101 limits: a staged model's smoke-test actions must stay inside them."""
    return {joint.name: (joint.min_deg, joint.max_deg) for joint in so101_joints()}


class ModelSpec(ConfigModel):
    """Where the desired model comes from (the ``model`` key)."""

    source: SourceKind = "none"
    path: str = ""
    """``local``/``artifact``: absolute directory with the model files and ``vla_edge_manifest.json``."""
    bucket: str = ""
    prefix: str = ""
    """``s3``: key prefix of the model's files; the manifest is ``prefix/vla_edge_manifest.json``."""
    region: str = ""
    """``s3``: the bucket's region (empty: the default chain's, e.g. ``AWS_REGION``)."""
    endpoint_url: str = ""
    """``s3``: another endpoint (an S3-compatible store, a test server); empty for AWS S3.

    Keys a source does not use are ignored rather than rejected: a deployment's merge update keeps
    the keys of the previous source (``bucket`` after a switch to ``local``) unless it resets them."""

    @field_validator("path")
    @classmethod
    def _plain_path(cls, value: str) -> str:
        if "{" in value and ":" in value and "}" in value:
            raise ValueError(
                f"path {value!r} still holds a recipe variable: enable interpolateComponentConfiguration in the "
                "nucleus configuration, or give the directory literally"
            )
        return value

    @model_validator(mode="after")
    def _complete(self) -> ModelSpec:
        if self.source in ("local", "artifact"):
            if not self.path:
                raise ValueError(f"source {self.source} needs path: the directory holding the model and {MANIFEST_FILE}")
            if not Path(self.path).expanduser().is_absolute():
                raise ValueError(f"path {self.path!r} must be absolute (the component's working directory is not "
                                 "the deployment's)")
        if self.source == "s3":
            if not self.bucket:
                raise ValueError("source s3 needs bucket (and prefix: the key prefix of the model's files)")
            if "/" in self.bucket or self.bucket.startswith("s3:"):
                raise ValueError(f"bucket {self.bucket!r} must be a bucket name only; put the key path in prefix")
        return self

    @property
    def manifest_key(self) -> str:
        prefix = self.prefix.strip("/")
        return f"{prefix}/{MANIFEST_FILE}" if prefix else MANIFEST_FILE

    def describe(self) -> str:
        if self.source == "s3":
            return f"s3://{self.bucket}/{self.prefix.strip('/')}"
        if self.source in ("local", "artifact"):
            return f"{self.source} {self.path}"
        return self.source



class ModelUpdaterConfig(ConfigModel):
    store_dir: str = ""
    """The model store; empty: ``<cache>/store`` (``$VLA_EDGE_CACHE`` or ``~/.cache/vla-edge``). The
    inference container must mount it at the same path: commands name models by their path there."""
    model: ModelSpec = Field(default_factory=ModelSpec)
    model_path: str = ""
    """Earlier versions' key: a model directory, read as ``model: {source: local, path: ...}``."""
    keep_previous: int = Field(default=2, ge=0, le=20)
    """Models kept on disk besides the active one, for rollback."""
    probation_s: float = Field(default=60.0, ge=0.0, le=86400.0, allow_inf_nan=False)
    """How long a new model is watched after it serves; a regression meanwhile rolls it back (0: no probation)."""
    latency_budget_ms: float = Field(default=0.0, ge=0.0, le=60000.0, allow_inf_nan=False)
    """The smoke inference's latency limit when staging (0: not checked)."""
    joint_limits: dict[str, tuple[float, float]] = Field(default_factory=so101_joint_limits)
    """Joint -> [min, max] in the actuator's units: a staged model's smoke-test actions must stay inside."""
    max_download_mbps: float = Field(default=0.0, ge=0.0, le=10000.0, allow_inf_nan=False, alias="maxDownloadMBps")
    """Bandwidth cap of downloads in MB/s (0: no cap), so a rollout does not starve the device's link."""
    stage_timeout_s: float = Field(default=900.0, gt=0.0, le=7200.0, allow_inf_nan=False)
    """How long the inference component may take to validate and load a model."""
    switch_timeout_s: float = Field(default=60.0, gt=0.0, le=3600.0, allow_inf_nan=False)
    """How long it may take from ``activate`` to the new model's first chunk."""
    defer_component_updates: bool = True
    """Hold Greengrass component updates back while the arm executes or a model switch is under way."""
    defer_recheck_s: float = Field(default=5.0, gt=0.0, le=3600.0, allow_inf_nan=False)
    iot_topic: str = DEFAULT_IOT_TOPIC
    """AWS IoT Core topic of the status (``{thingName}``: the device's thing); empty: not sent to the cloud."""
    report_period_s: float = Field(default=5.0, gt=0.0, le=3600.0, allow_inf_nan=False)

    @field_validator("joint_limits")
    @classmethod
    def _ranges(cls, value: dict[str, tuple[float, float]]) -> dict[str, tuple[float, float]]:
        inverted = [name for name, (low, high) in value.items() if not low < high]
        if inverted:
            raise ValueError(f"each joint limit must be [min, max] with min < max; not so: {inverted}")
        return value

    @field_validator("iot_topic")
    @classmethod
    def _topic(cls, value: str) -> str:
        if not value:
            return value
        try:
            sample = value.format(thingName="thing")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"iotTopic {value!r} may only use the placeholder {THING_PLACEHOLDER}") from exc
        if "+" in sample or "#" in sample or sample.startswith("/") or not sample.strip("/"):
            raise ValueError(f"iotTopic {value!r} must be a plain MQTT topic (no wildcards)")
        return value

    @model_validator(mode="after")
    def _one_model_key(self) -> ModelUpdaterConfig:
        if self.model_path and self.model.source != "none":
            raise ValueError("modelPath and model both name a model; keep model (modelPath is the older key)")
        if self.model_path and not Path(self.model_path).expanduser().is_absolute():
            raise ValueError(f"modelPath {self.model_path!r} must be an absolute directory")
        return self

    def store_root(self) -> Path:
        return Path(self.store_dir).expanduser() if self.store_dir else default_cache_dir() / "store"

    def desired(self) -> ModelSpec:
        """The desired model, with the older ``modelPath`` translated (see the module docstring)."""
        if not self.model_path:
            return self.model
        path = Path(self.model_path).expanduser()
        if (path / MANIFEST_FILE).is_file():
            return ModelSpec(source="local", path=str(path))
        return ModelSpec(source="image")

    def iot_topic_for(self, thing_name: str | None) -> str | None:
        """The IoT Core topic for this device, or None when off or the thing name is unknown."""
        if not self.iot_topic:
            return None
        if THING_PLACEHOLDER in self.iot_topic and not thing_name:
            return None
        return self.iot_topic.format(thingName=thing_name or "")
