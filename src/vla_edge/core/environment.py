"""Where a running core is, and the environment a component process gets from it.

Kept apart from :mod:`vla_edge.core.server` so that a process which only needs to
*find* a core (``vla-edge core env``, ``vla-edge core deploy``, a supervisor) reads
``core.json`` without loading the server.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from vla_edge.errors import ConfigurationError, CoreError

CORE_FILE = "core.json"
DEFAULT_THING_NAME = "vla-edge-local"
"""AWS_IOT_THING_NAME given to components when the core is started without one."""
DEFAULT_REGION = "us-east-1"


def write_core_file(path: Path, document: Mapping[str, Any]) -> None:
    """Write ``core.json`` atomically with mode 0600 (it holds every component's token)."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(document, handle, indent=2)
        handle.write("\n")
    os.replace(temporary, path)


def read_core_file(run_dir: str | Path) -> dict[str, Any]:
    """The ``core.json`` of a running core, with a clear error when there is none."""
    path = Path(run_dir).absolute() / CORE_FILE
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CoreError(f"no local core is running in {path.parent} ({CORE_FILE} not found): start one with "
                        f"`vla-edge core serve --run-dir {path.parent} --recipe ...` or `vla-edge up`") from None
    except (OSError, ValueError) as exc:
        raise CoreError(f"cannot read {path}: {exc}") from exc
    if not isinstance(document, dict) or not isinstance(document.get("components"), dict):
        raise CoreError(f"{path} is not a vla-edge core file")
    return document


def component_environment(run_dir: str | Path, component_name: str) -> dict[str, str]:
    """Environment variables the nucleus gives a component process, for ``component_name`` of the core in ``run_dir``.

    ``AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT`` and ``SVCUID`` are what the SDK
    client reads; the rest (thing name, region, the TES token variable) are set as the
    nucleus sets them so component code that reads them behaves as on a device.
    """
    document = read_core_file(run_dir)
    components = document["components"]
    if component_name not in components:
        raise ConfigurationError(unknown_component(component_name, components))
    return environment_for(document["socketPath"], components[component_name]["token"],
                        document.get("thingName", DEFAULT_THING_NAME), document.get("region", DEFAULT_REGION))


def environment_for(socket_path: str, token: str, thing_name: str, region: str) -> dict[str, str]:
    return {
        "AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT": socket_path,
        "AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH": socket_path,
        "SVCUID": token,
        "AWS_CONTAINER_AUTHORIZATION_TOKEN": token,
        "AWS_IOT_THING_NAME": thing_name,
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
    }


def unknown_component(component: str, known: Mapping[str, Any]) -> str:
    return f"unknown component {component!r}; the core knows: {', '.join(sorted(known)) or 'none'}"
