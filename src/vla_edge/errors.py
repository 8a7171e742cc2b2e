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
    │   │   ├── ServoCommError  no usable status packet, port still open (timeout, corrupt): retryable
    │   │   └── ServoFault      status packets arrived carrying error bits (overheat, overload...)
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
    ├── CoreError               local Greengrass core failures
    └── FleetError              vla-edge fleet / model publish (vla_edge.fleet.errors): AWS said no,
                                credentials missing, no Docker engine, a component not deployable
"""

from __future__ import annotations

from collections.abc import Mapping


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


class ServoCommError(ServoBusError):
    """A transaction got no usable status packet while the port stayed open.

    ``result`` names the SDK outcome, e.g. ``COMM_RX_TIMEOUT`` (no answer) or ``COMM_RX_CORRUPT``
    (bad checksum, truncated packet). Such a failure is usually transient (noise, a late
    reply), so unlike a vanished port it is worth retrying at once.
    """

    def __init__(self, message: str, result: str) -> None:
        super().__init__(message)
        self.result = result


class ServoFault(ServoBusError):
    """Servos answered, but their status packets carry error bits (overheat, overload, voltage...).

    The transaction itself worked, so what was read is kept: ``values`` (servo id -> decoded
    value, empty for a write) lets the caller go on using the readings, while ``faults``
    (servo id -> error byte, only servos with a bit set) says which servo reports what.
    """

    def __init__(self, message: str, faults: Mapping[int, int], values: Mapping[int, int] | None = None) -> None:
        super().__init__(message)
        self.faults = dict(faults)
        self.values = dict(values or {})


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
