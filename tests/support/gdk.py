"""GDK's recipe and config JSON schemas: reference data beside the checkout, never copied into it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SCHEMAS = Path(__file__).resolve().parents[2].parent / "shared" / "reference" / "gdk"


def lower_keys(value: Any) -> Any:
    """GDK lower-cases every key before validating a recipe."""
    if isinstance(value, dict):
        return {str(k).lower(): lower_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [lower_keys(v) for v in value]
    return value


def gdk_schema(name: str) -> dict[str, Any] | None:
    """``recipe_schema.json`` or ``config_schema.json``, or None where the reference data is absent."""
    path = SCHEMAS / name
    return json.loads(path.read_text()) if path.is_file() else None
