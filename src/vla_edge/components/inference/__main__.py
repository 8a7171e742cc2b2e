"""Entry point: ``python -m vla_edge.components.inference`` or ``vla-edge-inference``."""

from __future__ import annotations

import sys


def main() -> int:
    from vla_edge.components.base import run_component
    from vla_edge.components.inference.component import InferenceComponent
    from vla_edge.components.inference.config import InferenceConfig

    return run_component(InferenceComponent, InferenceConfig)


if __name__ == "__main__":
    sys.exit(main())
