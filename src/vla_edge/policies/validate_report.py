"""What the staging validator and its caller share: exit statuses, exceptions, the report.

The validator (``python -m vla_edge.policies.validate``, :mod:`vla_edge.policies.validate_checks`)
writes a :class:`ValidationReport` as JSON; :mod:`vla_edge.policies.validate_runner` reads it
back in the parent and adds what only the parent knows (exit status, signal, stderr).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from vla_edge.errors import ValidationFailed

EXIT_OK, EXIT_FAILED, EXIT_BAD_ARGUMENTS = 0, 1, 2
SMOKE_INFERENCES = 5


class ModelRejected(ValidationFailed):
    """The model failed one check; ``reason`` is the label a ModelReport carries."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class BadArguments(ValueError):
    """The validator was called wrongly (a caller bug, exit 2), as opposed to a model failing."""


@dataclass
class ValidationReport:
    """What the validator found. The first block is the child's JSON; the rest the parent adds."""

    ok: bool
    reason: str | None = None
    detail: str = ""
    policy_type: str | None = None
    load_ms: float | None = None
    warmup_ms: float | None = None
    smoke_inferences: int = 0
    smoke_ms_p50: float | None = None
    smoke_ms_max: float | None = None
    action_min: dict[str, float] = field(default_factory=dict)
    action_max: dict[str, float] = field(default_factory=dict)
    peak_rss_mb: float | None = None
    # filled in by validate_in_subprocess
    exit_code: int | None = None
    signal: str | None = None
    stderr_tail: str = ""
    wall_ms: float | None = None

    CHILD_FIELDS = ("ok", "reason", "detail", "policy_type", "load_ms", "warmup_ms", "smoke_inferences",
                    "smoke_ms_p50", "smoke_ms_max", "action_min", "action_max", "peak_rss_mb")

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        return {key: data[key] for key in self.CHILD_FIELDS}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ValidationReport:
        return cls(**{key: data[key] for key in cls.CHILD_FIELDS if key in data})


def ms_since(started: float) -> float:
    """Milliseconds since ``started`` (a ``time.perf_counter()`` reading), as the report's figures give them."""
    return round((time.perf_counter() - started) * 1000.0, 3)
