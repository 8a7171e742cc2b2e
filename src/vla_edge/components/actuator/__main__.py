"""Entry point: ``python -m vla_edge.components.actuator`` or ``vla-edge-actuator``."""

from __future__ import annotations

import sys


def main() -> int:
    from vla_edge.components.actuator.component import ActuatorComponent
    from vla_edge.components.actuator.config import ActuatorConfig
    from vla_edge.components.base import run_component

    return run_component(ActuatorComponent, ActuatorConfig)


if __name__ == "__main__":
    sys.exit(main())
