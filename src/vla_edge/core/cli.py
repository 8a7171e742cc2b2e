"""``vla-edge core``: run the local Greengrass core, or print a component's environment.

    vla-edge core serve --run-dir DIR --recipe PATH [--recipe PATH ...] [--overrides FILE]
    vla-edge core env COMPONENT --run-dir DIR

``serve`` runs until SIGINT or SIGTERM and exits 0 after a clean stop (1 when the
core cannot start). ``env`` prints ``export KEY=VALUE`` lines (shell-quoted) so a
component can be started by hand, e.g. under a debugger::

    eval "$(vla-edge core env com.vlaedge.Camera --run-dir /tmp/vla)"
    python -m vla_edge.components.camera

The top-level ``vla-edge`` command dispatches ``vla-edge core ...`` to :func:`main`
with the arguments after ``core``.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from vla_edge.errors import VlaEdgeError

log = logging.getLogger("vla_edge.core")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vla-edge core", description="Local Greengrass core for development and CI.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="{serve,env}")
    serve = commands.add_parser("serve", help="serve Greengrass IPC for the given recipes until SIGINT/SIGTERM")
    serve.add_argument("--run-dir", required=True, help="directory for ipc.socket and core.json (created 0700)")
    serve.add_argument("--recipe", action="append", required=True, metavar="PATH",
                       help="component recipe (YAML or JSON); repeat for each component")
    serve.add_argument("--overrides", metavar="FILE", help="JSON/YAML: component name -> configuration to merge")
    serve.add_argument("--thing-name", default=None, help="AWS_IOT_THING_NAME given to components")
    serve.add_argument("--region", default=None, help="AWS_REGION given to components")
    serve.add_argument("--max-message-size", type=int, default=None, metavar="BYTES",
                       help="largest accepted message payload (default 10 MiB)")
    serve.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    env = commands.add_parser("env", help="print `export` lines that let a process connect as COMPONENT")
    env.add_argument("component", help="component name, e.g. com.vlaedge.Camera, or vla-edge.Monitor")
    env.add_argument("--run-dir", required=True, help="run directory of a running `vla-edge core serve`")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point for ``vla-edge core`` (``argv`` excludes ``core`` itself); returns the exit status."""
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    if args.command == "env":
        return _env(args)
    return _serve(args)


def _env(args: argparse.Namespace) -> int:
    from vla_edge.core.server import component_environment

    try:
        environment = component_environment(args.run_dir, args.component)
    except VlaEdgeError as exc:
        sys.stderr.write(f"vla-edge core env: {exc}\n")
        return 1
    sys.stdout.write("".join(f"export {key}={shlex.quote(value)}\n" for key, value in environment.items()))
    return 0


def _serve(args: argparse.Namespace) -> int:
    if not logging.getLogger().handlers:
        logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from vla_edge.core.protocol import Limits
    from vla_edge.core.server import DEFAULT_REGION, DEFAULT_THING_NAME, LocalCore

    stop = threading.Event()

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s, stopping", signal.Signals(signum).name)
        stop.set()

    limits = Limits()
    if args.max_message_size is not None:
        limits.max_message_size = args.max_message_size
    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        core = LocalCore(args.run_dir, args.recipe, args.overrides, thing_name=args.thing_name or DEFAULT_THING_NAME,
                         region=args.region or DEFAULT_REGION, limits=limits)
        core.start()
    except VlaEdgeError as exc:
        log.error("cannot start the local core: %s", exc)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        return 1
    try:
        while not stop.wait(0.5):
            pass
    finally:
        core.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
