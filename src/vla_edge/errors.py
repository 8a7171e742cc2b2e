"""The one exception hierarchy of vla-edge.

Every error raised by our code derives from :class:`VlaEdgeError`. Errors from
libraries (awsiotsdk, pyserial, feetech-servo-sdk, LeRobot, boto3) are converted
at the boundary that calls them, with ``raise ... from exc`` so the cause stays
visible. Messages say what went wrong *and what to do about it*.

    VlaEdgeError
    ├── ConfigurationError      bad recipe / component configuration
    ├── MessageError            a payload that cannot be accepted
    │   ├── MalformedMessage    not decodable (bad JSON, bad binary framing)
    │   ├── UnsupportedSchema   schema version this build does not understand
    │   ├── OversizedMessage    larger than the topic allows
    │   ├── InvalidMessage      decodable but fails validation (NaN, wrong length...)
    │   └── UnexpectedTopic     arrived on a topic the receiver has no contract for
    ├── BusError                IPC transport failures
    │   └── AccessDenied        the recipe does not grant the operation
    ├── HardwareError           serial bus, servos, cameras
    │   ├── ServoBusError
    │   ├── FrameUnavailable    a frame cannot be read from a camera's shared-memory ring
    │   │   ├── FrameOverwritten    that frame's slot already holds a newer frame
    │   │   └── FrameNotReady       that frame has not been written yet
    │   └── RingInUse           a running writer owns the camera's ring
    ├── PolicyError             model loading / inference
    ├── ModelUpdateError        a model update that cannot go ahead (the previous model keeps serving)
    │   ├── ManifestError       a missing, malformed or mismatching model manifest
    │   ├── DownloadError       fetching model files failed (network, S3, permissions)
    │   ├── VerificationError   a file's size or sha256 differs from the manifest
    │   ├── InsufficientSpace   not enough free disk (or memory) for the update
    │   └── ValidationFailed    the staged model failed to load, fit or behave
    └── CoreError               local Greengrass core failures
"""

from __future__ import annotations


class VlaEdgeError(Exception):
    """Base class of every error vla-edge raises on purpose."""


class ConfigurationError(VlaEdgeError):
    """Configuration is invalid; the message names the key and the fix."""


class MessageError(VlaEdgeError):
    """A message was rejected. ``reason`` is a short machine-friendly label used in counters."""

    reason = "invalid"


class MalformedMessage(MessageError):
    reason = "malformed"


class UnsupportedSchema(MessageError):
    reason = "unsupported_schema"


class OversizedMessage(MessageError):
    reason = "oversized"


class InvalidMessage(MessageError):
    reason = "invalid"


class UnexpectedTopic(MessageError):
    reason = "unexpected_topic"


class BusError(VlaEdgeError):
    """Publishing, subscribing or configuration calls failed on the transport."""


class AccessDenied(BusError):
    """The component's recipe does not grant this IPC operation on this resource."""


class HardwareError(VlaEdgeError):
    """A device (camera, serial port, servo) failed."""


class ServoBusError(HardwareError):
    """A Feetech servo bus transaction failed (timeout, checksum, error bits, port gone)."""


class FrameUnavailable(HardwareError):
    """A frame could not be read from a camera's shared-memory ring (see :mod:`vla_edge.cameras.ring`)."""


class FrameOverwritten(FrameUnavailable):
    """The asked-for frame's slot already holds a newer frame: the reader fell more than a ring behind."""


class FrameNotReady(FrameUnavailable):
    """The asked-for frame has not been written yet."""


class RingInUse(HardwareError):
    """A running writer (another camera component) owns the ring; two writers must never share one."""


class PolicyError(VlaEdgeError):
    """A policy could not be loaded or run."""


class ModelUpdateError(VlaEdgeError):
    """A model update could not go ahead; the model that was serving keeps serving.

    ``reason`` is a short label for counters and the status topic."""

    reason = "update_failed"


class ManifestError(ModelUpdateError):
    reason = "bad_manifest"


class DownloadError(ModelUpdateError):
    reason = "download_failed"


class VerificationError(ModelUpdateError):
    reason = "verification_failed"


class InsufficientSpace(ModelUpdateError):
    reason = "insufficient_space"


class ValidationFailed(ModelUpdateError):
    reason = "validation_failed"


class CoreError(VlaEdgeError):
    """The local Greengrass core could not start or serve."""
