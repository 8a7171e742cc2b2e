"""``vla-edge arm status`` and ``vla-edge arm torque-off``: read the servos, and make the arm limp.

Status shows each joint in the actuator's configured units beside the raw ticks, so a person
comparing the table with a LeRobot recording or a policy's action sees the same numbers, and
can still tell an encoder problem (ticks) from a calibration problem (units).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from vla_edge.errors import ServoBusError
from vla_edge.motors.feetech import tables
from vla_edge.motors.feetech.arm_setup import UNIT_LABELS, ArmSetup
from vla_edge.motors.feetech.bus import FeetechBus

log = logging.getLogger(__name__)

STATUS_REGISTERS = (
    tables.TORQUE_ENABLE,
    tables.GOAL_POSITION,
    tables.PRESENT_POSITION,
    tables.PRESENT_LOAD,
    tables.PRESENT_VOLTAGE,
    tables.PRESENT_TEMPERATURE,
    tables.MOVING,
)


def read_status(bus: FeetechBus, setup: ArmSetup) -> list[dict[str, Any]]:
    """One row per configured joint: position and goal in units and ticks, health registers."""
    units = setup.units
    modes = setup.joint_modes
    rows = []
    for index, joint in enumerate(setup.config.joints):
        values, error = bus.read_registers(joint.id, STATUS_REGISTERS)
        present = values[tables.PRESENT_POSITION.name]
        goal = values[tables.GOAL_POSITION.name]
        rows.append(
            {
                "name": joint.name,
                "id": joint.id,
                "unit": modes[index],
                "position": units.to_units(index, present),
                "goal": units.to_units(index, goal),
                "position_ticks": present,
                "goal_ticks": goal,
                "temperature_c": values[tables.PRESENT_TEMPERATURE.name],
                "voltage_v": values[tables.PRESENT_VOLTAGE.name] / 10.0,
                "load_pct": values[tables.PRESENT_LOAD.name] / 10.0,
                "moving": bool(values[tables.MOVING.name]),
                "torque": bool(values[tables.TORQUE_ENABLE.name]),
                "error": error,
                "errors": tables.describe_error_bits(error),
            }
        )
    return rows


def status_document(setup: ArmSetup, rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """``status --json``: the units line and the rows, so a script never guesses the units."""
    config = setup.config
    return {
        "units": setup.describe_units(),
        "calibrated": bool(config.calibration or config.calibration_file),
        "normMode": config.norm_mode,
        "joints": list(rows),
    }


def number(value: float) -> str:
    """One decimal, never ``-0.0`` (a value that rounds to zero is shown as ``0.0``)."""
    text = f"{value:.1f}"
    return "0.0" if text == "-0.0" else text


def format_table(header: Sequence[str], lines: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns two spaces apart."""
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]
    out = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip()]
    out += ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines]
    return "\n".join(out)


def format_status(setup: ArmSetup, rows: Sequence[Mapping[str, Any]]) -> str:
    header = ("joint", "id", "position", "unit", "goal", "ticks", "goal ticks",
              "temp °C", "volt V", "load %", "moving", "torque", "errors")  # fmt: skip
    lines = [
        (
            str(r["name"]), str(r["id"]), number(r["position"]), UNIT_LABELS[r["unit"]], number(r["goal"]),
            str(r["position_ticks"]), str(r["goal_ticks"]), str(r["temperature_c"]), f"{r['voltage_v']:.1f}",
            f"{r['load_pct']:.1f}", "yes" if r["moving"] else "no", "on" if r["torque"] else "off", str(r["errors"]),
        )
        for r in rows
    ]  # fmt: skip
    return setup.describe_units() + "\n" + format_table(header, lines)


def torque_off(bus: FeetechBus, setup: ArmSetup) -> dict[str, bool]:
    """Torque off everywhere (every servo tried), then read each servo back: name -> still on?"""
    failure: ServoBusError | None = None
    try:
        bus.set_torque(False)
    except ServoBusError as exc:
        if not bus.is_connected:
            raise
        failure = exc
    still_on: dict[str, bool] = {}
    for joint in setup.config.joints:
        try:
            values, _ = bus.read_registers(joint.id, (tables.TORQUE_ENABLE,))
            still_on[joint.name] = bool(values[tables.TORQUE_ENABLE.name])
        except ServoBusError as exc:
            if not bus.is_connected:
                raise
            log.error("servo %d (%s): cannot confirm torque off: %s", joint.id, joint.name, exc)
            still_on[joint.name] = True
    if failure is not None and not any(still_on.values()):
        log.warning("torque off reported a problem but every servo reads torque off: %s", failure)
    elif failure is not None:
        log.error("%s", failure)
    return still_on
