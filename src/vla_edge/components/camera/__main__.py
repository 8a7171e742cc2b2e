"""Entry point: ``python -m vla_edge.components.camera`` or ``vla-edge-camera``."""

from __future__ import annotations

import sys


def main() -> int:
    from vla_edge.components.base import run_component
    from vla_edge.components.camera.component import CameraComponent
    from vla_edge.components.camera.config import CameraComponentConfig

    return run_component(CameraComponent, CameraComponentConfig)


if __name__ == "__main__":
    sys.exit(main())
