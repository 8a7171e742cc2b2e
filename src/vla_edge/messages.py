"""Every topic and every payload of the suite, in one place.

Components never build topic strings or payload dicts themselves: they publish a
message model (``encode`` picks its topic and encoding) and they receive through
``decode``, which validates before anything else sees the data.

Encodings
    Small messages are Greengrass *JSON messages* (readable by any IPC client and
    by people). Camera pixels never travel over IPC in normal operation: the camera
    writes them into a shared-memory ring (:mod:`vla_edge.cameras.ring`) and
    publishes a small :class:`FrameReady`. The one image that does travel, a debug
    snapshot, is a Greengrass *binary message* in a compact frame: ``b"VLAF"``, a
    4-byte big-endian header length, a UTF-8 JSON header, then the image bytes.
    Nothing is ever pickled.

Versioning
    Every payload carries ``"schema": SCHEMA_VERSION``. A receiver rejects a version
    it does not understand instead of guessing, so a fleet can run mixed versions
    during a rollout and the mismatch shows up in the counters, not as a bad motion.
"""

from __future__ import annotations

import json
import math
import struct
import time
import uuid
from typing import Annotated, Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from vla_edge.errors import (
    InvalidMessage,
    MalformedMessage,
    OversizedMessage,
    UnexpectedTopic,
    UnsupportedSchema,
)

SCHEMA_VERSION = 1
ROOT = "vla-edge"

# --- topics -------------------------------------------------------------------------------------

TOPIC_FRAME = ROOT + "/camera/{camera}/frame"
TOPIC_FRAME_ALL = ROOT + "/camera/+/frame"
TOPIC_SNAPSHOT_REQUEST = ROOT + "/debug/snapshot_request"
TOPIC_SNAPSHOT = ROOT + "/debug/snapshot/{camera}"
TOPIC_SNAPSHOT_ALL = ROOT + "/debug/snapshot/+"
TOPIC_JOINT_STATE = ROOT + "/arm/joint_state"
TOPIC_ACTION_CHUNK = ROOT + "/policy/action_chunk"
TOPIC_INSTRUCTION = ROOT + "/policy/instruction"
TOPIC_MODEL_STATUS = ROOT + "/model/status"
TOPIC_MODEL_COMMAND = ROOT + "/model/command"
TOPIC_MODEL_REPORT = ROOT + "/model/report"
TOPIC_ESTOP = ROOT + "/safety/estop"
TOPIC_HEALTH = ROOT + "/health/{component}"
TOPIC_HEALTH_ALL = ROOT + "/health/+"

MAX_JSON_BYTES = 64 * 1024
"""Control messages are small; anything bigger is a bug or an attack, not a message."""
MAX_FRAME_BYTES = 8 * 1024 * 1024
"""Greengrass IPC carries binary payloads base64-encoded; 8 MB raw fits under the nucleus limit."""

CameraName = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]

FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]


class Message(BaseModel):
    """Base of every payload: strict, versioned, finite numbers only."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    kind: ClassVar[str]
    topic_template: ClassVar[str]

    schema_: int = Field(default=SCHEMA_VERSION, alias="schema")

    def topic(self) -> str:
        return self.topic_template

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, **self.model_dump(mode="json", by_alias=True)}


class _FrameHeader(Message):
    """What describes one camera frame, wherever its pixels are."""

    camera: CameraName
    seq: int = Field(ge=0)
    t_capture: FiniteFloat
    height: int = Field(gt=0, le=4096)
    width: int = Field(gt=0, le=4096)
    channels: Literal[1, 3] = 3
    dtype: Literal["uint8"] = "uint8"


class FrameReady(_FrameHeader):
    """A new frame is in the camera's shared-memory ring: which one, where, and when it was captured."""

    kind: ClassVar[str] = "frame_ready"
    topic_template: ClassVar[str] = TOPIC_FRAME

    slot: int = Field(ge=0, le=1024)
    segment: str = Field(min_length=1, max_length=4096)
    """Path of the ring file; readers mount the same directory (see the inference recipe)."""

    def topic(self) -> str:
        return TOPIC_FRAME.format(camera=self.camera)


class SnapshotRequest(Message):
    """Ask the camera component for one JPEG of a camera (debug; off unless the recipe grants it)."""

    kind: ClassVar[str] = "snapshot_request"
    topic_template: ClassVar[str] = TOPIC_SNAPSHOT_REQUEST

    camera: CameraName
    request_id: str = Field(default_factory=lambda: uuid.uuid4().hex, min_length=1, max_length=64)


class Frame(_FrameHeader):
    """One image that travels over IPC (a debug snapshot): pixels beside the JSON header, not inside it."""

    kind: ClassVar[str] = "frame"
    topic_template: ClassVar[str] = TOPIC_SNAPSHOT

    encoding: Literal["raw", "jpeg"] = "raw"
    request_id: str | None = Field(default=None, max_length=64)
    pixels: bytes = Field(default=b"", exclude=True, repr=False)

    @model_validator(mode="after")
    def _pixels_match_shape(self) -> "Frame":
        if self.encoding == "jpeg":
            if not self.pixels.startswith(b"\xff\xd8"):
                raise ValueError("a jpeg frame must carry JPEG data (starting with FF D8)")
            return self
        expected = self.height * self.width * self.channels
        if len(self.pixels) != expected:
            raise ValueError(
                f"frame {self.height}x{self.width}x{self.channels} needs {expected} bytes of pixels, got {len(self.pixels)}"
            )
        return self

    def topic(self) -> str:
        return TOPIC_SNAPSHOT.format(camera=self.camera)

    @classmethod
    def from_array(cls, camera: str, seq: int, image: np.ndarray, t_capture: float | None = None) -> "Frame":
        if image.dtype != np.uint8 or image.ndim not in (2, 3):
            raise InvalidMessage(f"frame must be a uint8 HxW or HxWxC array, got {image.dtype} {image.shape}")
        channels = 1 if image.ndim == 2 else image.shape[2]
        return cls(
            camera=camera,
            seq=seq,
            t_capture=time.time() if t_capture is None else t_capture,
            height=image.shape[0],
            width=image.shape[1],
            channels=channels,
            pixels=np.ascontiguousarray(image).tobytes(),
        )

    def array(self) -> np.ndarray:
        """HxWxC uint8 view of raw pixels (read-only, no copy)."""
        if self.encoding != "raw":
            raise InvalidMessage(f"frame is {self.encoding}-encoded; decode it (e.g. cv2.imdecode) instead")
        return np.frombuffer(self.pixels, dtype=np.uint8).reshape(self.height, self.width, self.channels)


class JointState(Message):
    """Measured joint positions, published by the actuator every control tick."""

    kind: ClassVar[str] = "joint_state"
    topic_template: ClassVar[str] = TOPIC_JOINT_STATE

    t: FiniteFloat
    names: list[str] = Field(min_length=1, max_length=32)
    positions: list[FiniteFloat]
    goals: list[FiniteFloat] | None = None
    holding: bool = False
    torque_enabled: bool = True
    actions_applied: int = Field(default=0, ge=0)
    latency_ms: FiniteFloat | None = None
    """Capture-to-servo latency of the chunk whose first action was written this tick."""
    chunk_id: str | None = Field(default=None, max_length=64)
    action_index: int | None = Field(default=None, ge=0)
    """Which action of which chunk the goals of this tick came from (None while holding)."""

    @model_validator(mode="after")
    def _lengths(self) -> "JointState":
        if len(self.positions) != len(self.names):
            raise ValueError(f"{len(self.names)} joint names but {len(self.positions)} positions")
        if self.goals is not None and len(self.goals) != len(self.names):
            raise ValueError(f"{len(self.names)} joint names but {len(self.goals)} goals")
        return self


class ModelRef(BaseModel):
    """Which model produced something: lets the actuator reject actions from a model that is not active."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=200)
    version: str = Field(min_length=1, max_length=100)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class ActionChunk(Message):
    """A sequence of joint targets produced by one inference, each meant for a known time.

    Action ``i`` is meant for wall-clock time ``t_start + i * dt``.
    """

    kind: ClassVar[str] = "action_chunk"
    topic_template: ClassVar[str] = TOPIC_ACTION_CHUNK

    chunk_id: str = Field(default_factory=lambda: uuid.uuid4().hex, min_length=1, max_length=64)
    model: ModelRef
    t_created: FiniteFloat
    t_observation: FiniteFloat
    """Capture time of the newest camera frame in the observation (for capture-to-servo latency)."""
    t_start: FiniteFloat
    dt: float = Field(gt=0.0, le=1.0, allow_inf_nan=False)
    names: list[str] = Field(min_length=1, max_length=32)
    actions: list[list[FiniteFloat]] = Field(min_length=1, max_length=1000)

    @model_validator(mode="after")
    def _shape(self) -> "ActionChunk":
        width = len(self.names)
        for index, action in enumerate(self.actions):
            if len(action) != width:
                raise ValueError(f"action {index} has {len(action)} values for {width} joints {self.names}")
        return self


class TaskInstruction(Message):
    """Natural-language task for language-conditioned policies."""

    kind: ClassVar[str] = "instruction"
    topic_template: ClassVar[str] = TOPIC_INSTRUCTION

    text: str = Field(max_length=2000)


class ModelStatus(Message):
    """The model a device runs, as the model-updater reports it (the one source of the active model).

    ``switching``: ``model`` still serves and ``next_model`` is taking over; the actuator accepts
    chunks from both until a status names one active, so the switch never leaves a tick without a
    plan. With ``hold`` the switch cannot keep both models loaded: the actuator drops its queued
    actions and holds the arm until the next model's chunks arrive.
    """

    kind: ClassVar[str] = "model_status"
    topic_template: ClassVar[str] = TOPIC_MODEL_STATUS

    t: FiniteFloat
    state: Literal["active", "staging", "switching", "failed", "rolled_back", "none"]
    model: ModelRef | None = None
    next_model: ModelRef | None = None
    next_norm_mode: Literal["degrees", "range_m100_100"] | None = None
    """``switching``: the ``norm_mode`` of ``next_model`` (its chunks are checked against it)."""
    hold: bool = False
    policy_type: str | None = None
    path: str | None = None
    robot: str | None = Field(default=None, max_length=100)
    """The robot type the model was trained for (e.g. ``so101_follower``), when its manifest says."""
    norm_mode: Literal["degrees", "range_m100_100"] | None = None
    """The body joints' units the model was trained in (LeRobot ``use_degrees`` true: ``degrees``),
    when its manifest says; the actuator refuses the model's chunks if its ``normMode`` differs."""
    detail: str = ""


ModelAction = Literal["stage", "activate", "discard"]


class ModelCommand(Message):
    """The model-updater's instruction to the inference component.

    ``stage``: validate the model at ``path`` in a separate process (it loads, its features fit
    this device's cameras and joints, a smoke inference stays within ``latency_budget_ms`` and its
    actions within ``joint_limits``), then load it beside the serving model and warm it up; or,
    with ``allow_unload`` and too little memory for two, unload the serving model first (the
    updater has the arm hold). ``activate``: serve this (staged or still loaded) model from the
    next chunk on. ``discard``: unload this model if it is loaded and not serving.
    """

    kind: ClassVar[str] = "model_command"
    topic_template: ClassVar[str] = TOPIC_MODEL_COMMAND

    t: FiniteFloat
    request_id: str = Field(default_factory=lambda: uuid.uuid4().hex, min_length=1, max_length=64)
    action: ModelAction
    model: ModelRef
    path: str = Field(default="", max_length=4096)
    memory_mb: float | None = Field(default=None, ge=0.0)
    """What the model's manifest says it needs; the inference component estimates it otherwise."""
    allow_unload: bool = False
    latency_budget_ms: float | None = Field(default=None, gt=0.0)
    joint_limits: dict[str, tuple[FiniteFloat, FiniteFloat]] | None = None
    """Joint name -> (min, max) in the actuator's units: every smoke-test action must be inside."""


class ModelReport(Message):
    """The inference component's answer to a :class:`ModelCommand` (and its report on start)."""

    kind: ClassVar[str] = "model_report"
    topic_template: ClassVar[str] = TOPIC_MODEL_REPORT

    t: FiniteFloat
    request_id: str | None = Field(default=None, max_length=64)
    model: ModelRef
    state: Literal["validating", "loading", "staged", "serving", "failed", "unloaded"]
    detail: str = Field(default="", max_length=4000)
    reason: str | None = Field(default=None, max_length=64)
    """For ``failed``: a short label (e.g. ``load_failed``, ``feature_mismatch``, ``too_slow``,
    ``out_of_limits``, ``validator_crashed``, ``insufficient_memory``)."""
    beside: bool = False
    """``staged``/``serving``: loaded while another model kept serving (no hold needed)."""
    path: str | None = Field(default=None, max_length=4096)
    load_ms: float | None = Field(default=None, ge=0.0, allow_inf_nan=False)
    smoke_ms_p50: float | None = Field(default=None, ge=0.0, allow_inf_nan=False)
    memory_mb: float | None = Field(default=None, ge=0.0, allow_inf_nan=False)
    first_chunk_id: str | None = Field(default=None, max_length=64)
    """``serving``: the first chunk published from this model."""


class EStop(Message):
    """Emergency stop: ``engaged=True`` turns torque off and latches until ``engaged=False`` (reset)."""

    kind: ClassVar[str] = "estop"
    topic_template: ClassVar[str] = TOPIC_ESTOP

    t: FiniteFloat
    engaged: bool
    source: str = Field(default="operator", max_length=100)
    reason: str = Field(default="", max_length=500)


class ComponentHealth(Message):
    """Periodic health of one component: state, counters and metrics."""

    kind: ClassVar[str] = "health"
    topic_template: ClassVar[str] = TOPIC_HEALTH

    t: FiniteFloat
    component: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.-]+$")
    state: Literal["STARTING", "RUNNING", "ERRORED", "STOPPING"]
    detail: str = Field(default="", max_length=2000)
    counters: dict[str, int] = Field(default_factory=dict)
    metrics: dict[str, FiniteFloat | None] = Field(default_factory=dict)

    def topic(self) -> str:
        return TOPIC_HEALTH.format(component=self.component)

    @field_validator("counters")
    @classmethod
    def _non_negative(cls, value: dict[str, int]) -> dict[str, int]:
        negative = [k for k, v in value.items() if v < 0]
        if negative:
            raise ValueError(f"counters must be >= 0: {negative}")
        return value


JSON_MESSAGES: dict[str, type[Message]] = {
    cls.kind: cls
    for cls in (
        FrameReady,
        JointState,
        ActionChunk,
        TaskInstruction,
        ModelStatus,
        ModelCommand,
        ModelReport,
        EStop,
        ComponentHealth,
        SnapshotRequest,
    )
}

_FRAME_MAGIC = b"VLAF"
_FRAME_PREFIX = struct.Struct(">4sI")


# --- encoding -----------------------------------------------------------------------------------


def encode(message: Message) -> tuple[str, dict[str, Any] | bytes]:
    """Return ``(topic, payload)`` ready for :meth:`vla_edge.bus.Bus.publish`."""
    if isinstance(message, Frame):
        header = json.dumps(message.to_json(), separators=(",", ":")).encode()
        return message.topic(), _FRAME_PREFIX.pack(_FRAME_MAGIC, len(header)) + header + message.pixels
    return message.topic(), message.to_json()


def decode(topic: str, payload: dict[str, Any] | bytes, expect: type[Message] | None = None) -> Message:
    """Validate and decode one received payload.

    Raises a :class:`vla_edge.errors.MessageError` subclass whose ``reason`` is used
    for counters and whose text says what was wrong.
    """
    expected = expect or _type_for_topic(topic)
    if expected is Frame:
        return _decode_frame(topic, payload)
    if isinstance(payload, (bytes, bytearray)):
        if len(payload) > MAX_JSON_BYTES:
            raise OversizedMessage(f"{len(payload)} bytes on {topic!r}; control messages are limited to {MAX_JSON_BYTES}")
        try:
            body = json.loads(bytes(payload).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise MalformedMessage(f"payload on {topic!r} is not valid UTF-8 JSON: {exc}") from exc
    else:
        body = payload
        size = len(json.dumps(body, separators=(",", ":"), allow_nan=True))
        if size > MAX_JSON_BYTES:
            raise OversizedMessage(f"{size} bytes on {topic!r}; control messages are limited to {MAX_JSON_BYTES}")
    if not isinstance(body, dict):
        raise MalformedMessage(f"payload on {topic!r} must be a JSON object, got {type(body).__name__}")
    _check_schema(topic, body)
    kind = body.get("kind")
    if kind != expected.kind:
        raise InvalidMessage(f"topic {topic!r} carries {expected.kind!r} messages, got kind={kind!r}")
    fields = {k: v for k, v in body.items() if k != "kind"}
    _reject_non_finite(fields, topic)
    try:
        message = expected.model_validate(fields)
    except ValidationError as exc:
        raise InvalidMessage(f"invalid {expected.kind} on {topic!r}: {_summarise(exc)}") from exc
    if message.topic() != topic:
        raise InvalidMessage(f"{message.kind} for {message.topic()!r} arrived on {topic!r}")
    return message


def _decode_frame(topic: str, payload: dict[str, Any] | bytes) -> Frame:
    if not isinstance(payload, (bytes, bytearray)):
        raise MalformedMessage(f"frames on {topic!r} must be binary messages, got a JSON message")
    if len(payload) > MAX_FRAME_BYTES:
        raise OversizedMessage(f"frame of {len(payload)} bytes on {topic!r}; the limit is {MAX_FRAME_BYTES}")
    if len(payload) < _FRAME_PREFIX.size:
        raise MalformedMessage(f"frame on {topic!r} is {len(payload)} bytes, shorter than its header")
    magic, header_len = _FRAME_PREFIX.unpack_from(payload)
    if magic != _FRAME_MAGIC:
        raise MalformedMessage(f"frame on {topic!r} does not start with {_FRAME_MAGIC!r}")
    start = _FRAME_PREFIX.size
    if header_len > MAX_JSON_BYTES or start + header_len > len(payload):
        raise MalformedMessage(f"frame on {topic!r} declares a {header_len}-byte header that does not fit")
    try:
        header = json.loads(bytes(payload[start : start + header_len]).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MalformedMessage(f"frame header on {topic!r} is not valid JSON: {exc}") from exc
    if not isinstance(header, dict):
        raise MalformedMessage(f"frame header on {topic!r} must be a JSON object")
    _check_schema(topic, header)
    if header.pop("kind", None) != Frame.kind:
        raise InvalidMessage(f"binary message on {topic!r} is not a frame")
    try:
        frame = Frame.model_validate({**header, "pixels": bytes(payload[start + header_len :])})
    except ValidationError as exc:
        raise InvalidMessage(f"invalid frame on {topic!r}: {_summarise(exc)}") from exc
    if frame.topic() != topic:
        raise InvalidMessage(f"frame of camera {frame.camera!r} arrived on {topic!r}")
    return frame


def _type_for_topic(topic: str) -> type[Message]:
    parts = topic.split("/")
    if len(parts) == 4 and parts[0] == ROOT and parts[1] == "camera" and parts[3] == "frame":
        return FrameReady
    if len(parts) == 4 and parts[0] == ROOT and parts[1:3] == ["debug", "snapshot"]:
        return Frame
    if len(parts) == 3 and parts[0] == ROOT and parts[1] == "health":
        return ComponentHealth
    for cls in JSON_MESSAGES.values():
        if cls.topic_template == topic:
            return cls
    raise UnexpectedTopic(f"no message contract for topic {topic!r}; known topics are under {ROOT!r}/")


def _check_schema(topic: str, body: dict[str, Any]) -> None:
    version = body.get("schema")
    if version != SCHEMA_VERSION:
        raise UnsupportedSchema(
            f"message on {topic!r} has schema {version!r}; this build understands schema {SCHEMA_VERSION}. "
            "Deploy the same vla-edge version to every component of the device."
        )


def _reject_non_finite(value: Any, topic: str) -> None:
    """JSON has no NaN, but Python's json module emits and parses it; refuse it explicitly."""
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidMessage(f"non-finite number {value!r} in message on {topic!r}")
    if isinstance(value, dict):
        for item in value.values():
            _reject_non_finite(item, topic)
    elif isinstance(value, list):
        for item in value:
            _reject_non_finite(item, topic)


def _summarise(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors()[:5]:
        where = ".".join(str(part) for part in error["loc"]) or "message"
        problems.append(f"{where}: {error['msg']}")
    return "; ".join(problems)
