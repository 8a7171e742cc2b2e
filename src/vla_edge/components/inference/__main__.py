"""Entry point: ``python -m vla_edge.components.inference`` or ``vla-edge-inference``.

The component runs offline: ``HF_HUB_OFFLINE=1`` is set (unless the environment already
sets it) before anything imports ``huggingface_hub`` or LeRobot, which read it at import
time, so nothing can be fetched from a model hub at run time. SIGTERM/SIGINT finish the
inference in progress, publish its chunk and exit 0 (see ``run_component``).
"""

from __future__ import annotations

import os
import sys

OFFLINE_DEFAULTS = {"HF_HUB_OFFLINE": "1"}


def prepare_environment() -> None:
    """Set the offline defaults the process environment does not set itself."""
    for key, value in OFFLINE_DEFAULTS.items():
        os.environ.setdefault(key, value)


def main() -> int:
    prepare_environment()
    from vla_edge.components.base import run_component
    from vla_edge.components.inference.component import InferenceComponent
    from vla_edge.components.inference.config import InferenceConfig

    return run_component(InferenceComponent, InferenceConfig)


if __name__ == "__main__":
    sys.exit(main())
