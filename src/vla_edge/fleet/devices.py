"""Which component versions, and which model, each core device of a group reports.

Devices report installed component versions (``list_installed_components``), not models.
The model comes from the recipe of the inference version a device runs, where
:func:`vla_edge.fleet.components.render_inference_recipe` recorded it; each version's
recipe is read once however many devices run it. A model rolled out later by the
model-updater alone (``--model-only``) is not visible here: the updater reports it on
``vla-edge/<thing>/model/status`` in AWS IoT Core.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from vla_edge.fleet.aws import Aws
from vla_edge.fleet.components import INFERENCE, component_arn, model_label, recipe_model
from vla_edge.fleet.errors import NotFound
from vla_edge.messages import ModelRef

log = logging.getLogger(__name__)

PREFIX = "com.vlaedge."


@dataclass
class DeviceReport:
    name: str
    status: str
    last_update: datetime | None
    components: dict[str, str] = field(default_factory=dict)
    states: dict[str, str] = field(default_factory=dict)
    model: ModelRef | None = None

    def to_json(self) -> dict[str, Any]:
        model = None if self.model is None else self.model.model_dump()
        return {"device": self.name, "status": self.status,
                "lastStatusUpdate": self.last_update.isoformat() if self.last_update else None,
                "components": self.components, "lifecycleStates": self.states, "model": model}


def installed_components(aws: Aws, device: str) -> list[dict[str, Any]]:
    gg = aws.client("greengrassv2")
    found: list[dict[str, Any]] = []
    token = None
    while True:
        page = gg.list_installed_components(coreDeviceThingName=device, topologyFilter="ALL",
                                           **({"nextToken": token} if token else {}))
        found += page.get("installedComponents", [])
        token = page.get("nextToken")
        if not token:
            return found


def fleet_devices(aws: Aws, group_arn: str) -> list[DeviceReport]:
    """One report per core device of the group, sorted by name."""
    gg = aws.client("greengrassv2")
    cores: list[dict[str, Any]] = []
    token = None
    while True:
        page = gg.list_core_devices(thingGroupArn=group_arn, **({"nextToken": token} if token else {}))
        cores += page.get("coreDevices", [])
        token = page.get("nextToken")
        if not token:
            break
    models: dict[str, ModelRef | None] = {}
    reports = []
    for core in sorted(cores, key=lambda c: c["coreDeviceThingName"]):
        report = DeviceReport(core["coreDeviceThingName"], core.get("status", ""), core.get("lastStatusUpdateTimestamp"))
        for entry in installed_components(aws, report.name):
            name = entry.get("componentName", "")
            if name.startswith(PREFIX):
                report.components[name] = entry.get("componentVersion", "")
                report.states[name] = entry.get("lifecycleState", "")
        version = report.components.get(INFERENCE)
        if version:
            if version not in models:
                arn = component_arn(aws.resolved_region(), aws.account_id(), INFERENCE, version)
                try:
                    models[version] = recipe_model(aws, arn)
                except NotFound:
                    log.warning("%s %s is not in this account's components (a local deployment?)", INFERENCE, version)
                    models[version] = None
            report.model = models[version]
        reports.append(report)
    return reports


def devices_table(reports: list[DeviceReport]) -> str:
    """A plain-text table: device, status, last update, inference version, model, other vla-edge components."""
    rows = [("DEVICE", "STATUS", "LAST UPDATE (UTC)", "INFERENCE", "MODEL", "OTHER COMPONENTS")]
    for r in reports:
        others = ", ".join(f"{k[len(PREFIX):]} {v}" + ("" if r.states.get(k) in ("RUNNING", "FINISHED", "") else
                                                         f" ({r.states[k]})")
                           for k, v in sorted(r.components.items()) if k != INFERENCE)
        inference = r.components.get(INFERENCE, "-")
        if r.states.get(INFERENCE) not in (None, "RUNNING", ""):
            inference += f" ({r.states[INFERENCE]})"
        when = r.last_update.strftime("%Y-%m-%d %H:%M") if r.last_update else "-"
        rows.append((r.name, r.status, when, inference, model_label(r.model) if r.model else "-", others or "-"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row[:-1], widths, strict=True)) + "  " + row[-1]
             for row in rows]
    return "\n".join(line.rstrip() for line in lines) + "\n"
