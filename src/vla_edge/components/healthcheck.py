"""A heartbeat file for container health checks: ``python -m vla_edge.components.healthcheck``.

When ``VLA_EDGE_HEALTH_FILE`` is set (the inference image sets it), a component writes its state
and the time to that file each time it publishes its health (about once a second once it runs).
The image's ``HEALTHCHECK`` runs this module, which exits 0 when the newest heartbeat is fresher
than ``--max-age-s`` (default 30 s) and its state is not ERRORED, and 1 otherwise, with the reason
on stdout (``docker inspect`` shows it). No heartbeat yet (loading and warming up the model) is
unhealthy too: the image's start period covers the start.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

HEALTH_FILE_ENV = "VLA_EDGE_HEALTH_FILE"
DEFAULT_MAX_AGE_S = 30.0


def health_file() -> Path | None:
    value = os.environ.get(HEALTH_FILE_ENV, "")
    return Path(value) if value else None


def write_heartbeat(path: Path, component: str, state: str, now: float | None = None) -> None:
    """Replace ``path`` atomically with the component's state and the time."""
    record = {"component": component, "state": state, "t": time.time() if now is None else now, "pid": os.getpid()}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(record), encoding="utf-8")
    os.replace(tmp, path)


def check(path: Path, max_age_s: float = DEFAULT_MAX_AGE_S, now: float | None = None) -> tuple[bool, str]:
    """(healthy, why) from the heartbeat at ``path``."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        t, state, component = float(record["t"]), str(record["state"]), str(record.get("component", "component"))
    except FileNotFoundError:
        return False, f"no heartbeat in {path} yet (still starting, or never reached RUNNING)"
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return False, f"unreadable heartbeat {path}: {exc}"
    age = (time.time() if now is None else now) - t
    if state == "ERRORED":
        return False, f"{component} reports ERRORED"
    if age > max_age_s:
        return False, f"{component}'s last heartbeat is {age:.0f} s old (more than {max_age_s:g} s): stuck or stopped"
    return True, f"{component} {state}, heartbeat {max(age, 0.0):.1f} s ago"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Exit 0 when the component's heartbeat file is fresh (a container HEALTHCHECK)")
    parser.add_argument("--file", type=Path, default=None, help=f"heartbeat file (default: ${HEALTH_FILE_ENV})")
    parser.add_argument("--max-age-s", type=float, default=DEFAULT_MAX_AGE_S)
    args = parser.parse_args(argv)
    path = args.file or health_file()
    if path is None:
        print(f"no heartbeat file: set {HEALTH_FILE_ENV} or pass --file")
        return 1
    healthy, why = check(path, args.max_age_s)
    print(why)
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
