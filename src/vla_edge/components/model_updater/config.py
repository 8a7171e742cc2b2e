"""Configuration of the model-updater component."""

from __future__ import annotations

from pydantic import Field

from vla_edge.components.base import ConfigModel


class ModelUpdaterConfig(ConfigModel):
    model_path: str = ""
    """Active policy directory; empty means the demo policy in the cache directory."""
    cache_dir: str = ""
    """Overrides ``$VLA_EDGE_CACHE`` / ``~/.cache/vla-edge``."""
    report_period_s: float = Field(default=5.0, gt=0, le=3600)
