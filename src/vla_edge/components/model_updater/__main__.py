"""Entry point: ``python -m vla_edge.components.model_updater`` or ``vla-edge-model-updater``."""

from __future__ import annotations

import sys


def main() -> int:
    from vla_edge.components.base import run_component
    from vla_edge.components.model_updater.component import ModelUpdaterComponent
    from vla_edge.components.model_updater.config import ModelUpdaterConfig

    return run_component(ModelUpdaterComponent, ModelUpdaterConfig)


if __name__ == "__main__":
    sys.exit(main())
