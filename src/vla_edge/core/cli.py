"""``vla-edge core``: run the local Greengrass core, print a component's environment, or play a deployment.

    vla-edge core serve --run-dir DIR --recipe PATH [--recipe PATH ...] [--overrides FILE] [--thing-name NAME]
    vla-edge core env COMPONENT --run-dir DIR
    vla-edge core deploy --run-dir DIR [--update-config JSON|@FILE] [--deployment-id ID] [--timeout S]
                         [--validation-timeout S] [--recheck-min S] [--max-wait S] [--skip-notify] [--ggc-restarting] [--json]

``serve`` runs until SIGINT or SIGTERM and exits 0 after a clean stop (1 when the
core cannot start). ``env`` prints ``export KEY=VALUE`` lines (shell-quoted) so a
component can be started by hand, e.g. under a debugger::

    eval "$(vla-edge core env com.vlaedge.Camera --run-dir /tmp/vla)"
    python -m vla_edge.components.camera

``deploy`` plays the component-update step of a deployment on the running core
(through its control socket): components subscribed to component updates get
pre-update events until none defers, then the post-update event. It prints who
deferred and why, and how long the update waited (``--json``: the whole
outcome), and exits 0 once the update went ahead, 1 on errors. ``--timeout`` is
the deployment's componentUpdatePolicy timeout (default 60 s) for each round of
answers; ``--max-wait`` caps the whole wait (the nucleus has no such cap).
Interrupting ``deploy`` cancels the step; subscribers then get the post-update
event at once.

With ``--update-config`` it deploys a configuration change, in the shape
``greengrass-cli deployment create --update-config`` takes (a JSON string or
``@FILE``)::

    vla-edge core deploy --run-dir /tmp/vla --update-config \
        '{"com.vlaedge.ModelUpdater": {"RESET": ["/pinnedVersion"], "MERGE": {"modelPath": "/models/v2"}}}'

Components that validate configurations are asked first (one rejection fails the
deployment, exit 1, nothing applied), then the component-update step runs, then the
new configurations are applied (:mod:`vla_edge.core.deployments`). It prints each
component's answer, what changed, who deferred, and the configurations now
(``--json``: the whole result).

The top-level ``vla-edge`` command dispatches ``vla-edge core ...`` to :func:`main`
with the arguments after ``core``.
"""

from __future__ import annotations

import argparse
import json
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
    commands = parser.add_subparsers(dest="command", required=True, metavar="{serve,env,deploy}")
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
    deploy = commands.add_parser("deploy", help="deploy to a running core: the component-update step, and with "
                                 "--update-config a configuration change")
    deploy.add_argument("--run-dir", required=True, help="run directory of a running `vla-edge core serve`")
    deploy.add_argument("--update-config", metavar="JSON|@FILE", default=None,
                        help='configuration change as greengrass-cli takes it: {"<component>": {"RESET": '
                             '["/json/pointer"], "MERGE": {...}}}')
    deploy.add_argument("--validation-timeout", type=float, default=30.0, metavar="S",
                        help="configurationValidationPolicy timeout: how long validators may take (default 30)")
    deploy.add_argument("--deployment-id", default=None, help="deployment id sent to components (default: random)")
    deploy.add_argument("--timeout", type=float, default=60.0, metavar="S",
                        help="componentUpdatePolicy timeout: how long each round waits for answers (default 60)")
    deploy.add_argument("--recheck-min", type=float, default=1.0, metavar="S",
                        help="shortest pause before re-asking a component that deferred (default 1, as the nucleus)")
    deploy.add_argument("--skip-notify", action="store_true",
                        help="with --update-config: the SKIP_NOTIFY_COMPONENTS update policy (no pre-update event, "
                             "nobody can defer), for a model rollout the model-updater switches without stopping")
    deploy.add_argument("--max-wait", type=float, default=None, metavar="S",
                        help="proceed after this long even if components still defer (default: wait as they ask)")
    deploy.add_argument("--ggc-restarting", action="store_true", help="set isGgcRestarting in pre-update events")
    deploy.add_argument("--json", action="store_true", help="print the outcome as JSON")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point for ``vla-edge core`` (``argv`` excludes ``core`` itself); returns the exit status."""
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    if args.command == "env":
        return _env(args)
    if args.command == "deploy":
        return _deploy(args)
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


def _deploy(args: argparse.Namespace) -> int:
    from vla_edge.core.control import UPDATE_COMPONENTS, control_request, control_socket, deploy_configuration
    from vla_edge.core.deployments import describe, describe_outcome, load_update_config
    from vla_edge.core.updates import UpdateOutcome

    steps = {"timeout_s": args.timeout, "recheck_min_s": args.recheck_min, "max_wait_s": args.max_wait}
    try:
        if args.update_config is not None:
            result = deploy_configuration(args.run_dir, load_update_config(args.update_config),
                                          deployment_id=args.deployment_id, notify=not args.skip_notify,
                                          validation_timeout_s=args.validation_timeout, **steps)
            sys.stdout.write(json.dumps(result.to_dict(), indent=2) + "\n" if args.json
                             else "\n".join(describe(result)) + "\n")
            return 0 if result.status == "SUCCEEDED" else 1
        request = {"op": UPDATE_COMPONENTS, "deploymentId": args.deployment_id, "timeoutS": args.timeout,
                   "recheckMinS": args.recheck_min, "maxWaitS": args.max_wait, "ggcRestarting": args.ggc_restarting}
        answer = control_request(control_socket(args.run_dir), request)
    except VlaEdgeError as exc:
        sys.stderr.write(f"vla-edge core deploy: {exc}\n")
        return 1
    if not answer.get("ok"):
        sys.stderr.write(f"vla-edge core deploy: {answer.get('error', answer)}\n")
        return 1
    outcome = UpdateOutcome.from_dict(answer["outcome"])
    if args.json:
        sys.stdout.write(json.dumps(outcome.to_dict(), indent=2) + "\n")
        return 0
    lines = describe_outcome(outcome)
    lines[0] = lines[0].replace("update step:", f"deployment {outcome.deployment_id}: update", 1)
    sys.stdout.write("\n".join(lines) + "\n")
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
