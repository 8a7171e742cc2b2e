"""``vla-edge up``: the whole suite on one machine, on the same code paths as a device.

Order of events:
1. without ``--serial-port``, start the STS3215 arm emulator and read its device path;
2. start the local Greengrass core with the four recipes and the overrides that point the
   components at the camera, serial port and policy;
3. start each component as its own process with the environment the nucleus gives
   components, under the nucleus's restart rules (:mod:`vla_edge.supervisor`);
4. watch the bus read-only (:mod:`vla_edge.monitor`); ``--duration`` counts from the
   moment every component reports RUNNING;
5. stop in reverse order (components get SIGTERM: the arm holds, then torque goes off).

Models: the inference component and the model-updater share one model store, ``store/`` in the
run directory (the updater's ``storeDir``; the inference component has no store key: it reads
models at the paths the updater's commands name, which on one machine need no mount). A store
per run directory keeps runs apart, and a run that reuses ``--run-dir`` finds its store as a
device finds its own after a reboot. ``--policy DIR`` is the model both start with: the
inference component loads it, and the updater's ``model`` names it: ``{source: local, path:
DIR}`` when DIR carries a ``vla_edge_manifest.json`` (``vla-edge model manifest DIR --version V``),
so the updater verifies it into the store and records it active; ``{source: image}`` otherwise
(adopted as served, as a model baked into the inference image is). The ``model`` key rather than
the older ``modelPath`` so that a later ``vla-edge core deploy --update-config`` which MERGEs a
new ``model`` is accepted (an updater given both keys rejects the configuration).

``--calibration FILE`` (a LeRobot calibration JSON) starts the actuator with that calibration
inline in its ``calibration`` key, as a deployment made with ``vla-edge arm calibration import``
would, after checking it against the actuator's joints. It is an override rather than an update
of a running suite because the actuator reads its configuration once, when it starts, and the
local core, like the nucleus, lets a component change only its own configuration.
"""

from __future__ import annotations

import json
import logging
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import yaml

from vla_edge.errors import ConfigurationError, CoreError
from vla_edge.motors.feetech.emulator.remote import RemoteArmEmulator
from vla_edge.supervisor import ProcessSpec, ProcessStatus, Supervisor, terminate

log = logging.getLogger(__name__)

MONITOR_IDENTITY = "vla-edge.Monitor"
ACTUATOR = "com.vlaedge.Actuator"
UPDATER = "com.vlaedge.ModelUpdater"
MODEL_KEYS = ("model", "modelPath")
STORE_DIRNAME = "store"
CALIBRATION_KEYS = ("calibration", "calibrationFile")


@dataclass(frozen=True)
class SuiteComponent:
    name: str
    short: str
    recipe_dir: str
    module: str


COMPONENTS = (
    SuiteComponent("com.vlaedge.Actuator", "actuator", "actuator", "vla_edge.components.actuator"),
    SuiteComponent("com.vlaedge.ModelUpdater", "model_updater", "model-updater", "vla_edge.components.model_updater"),
    SuiteComponent("com.vlaedge.Inference", "inference", "inference", "vla_edge.components.inference"),
    SuiteComponent("com.vlaedge.Camera", "camera", "camera", "vla_edge.components.camera"),
)


@dataclass
class UpOptions:
    duration_s: float | None = None
    json_summary: bool = False
    camera: str | None = None
    serial_port: str | None = None
    policy: str | None = None
    config: Path | None = None
    run_dir: Path | None = None
    recipes_dir: Path | None = None
    cache_dir: Path | None = None
    calibration: Path | None = None
    """A LeRobot calibration JSON the actuator gets inline (see the module docstring)."""
    startup_timeout_s: float = 180.0
    status_stream: IO[str] = field(default_factory=lambda: sys.stderr)


def find_recipes_dir(explicit: Path | None) -> Path:
    """``--recipes``, else ``./components``, else the source checkout's ``components/``."""
    candidates = [explicit] if explicit else [Path.cwd() / "components", Path(__file__).resolve().parents[2] / "components"]
    for candidate in candidates:
        if candidate and all((candidate / c.recipe_dir / "recipe.yaml").is_file() for c in COMPONENTS):
            return candidate
    raise ConfigurationError(
        f"no component recipes found in {[str(c) for c in candidates]}; run from the vla-edge checkout "
        "or pass --recipes DIR (the folder holding camera/, inference/, actuator/, model-updater/)"
    )


def frame_dir_for(run_dir: Path) -> Path:
    """Shared-memory rings of this run: in /dev/shm (a tmpfs) where there is one, else in the run directory."""
    shm = Path("/dev/shm")
    return shm / f"vla-edge-{run_dir.name}" if shm.is_dir() else run_dir / "frames"


def camera_source(value: str) -> dict[str, Any]:
    """``--camera`` as camera configuration: a device index or /dev/video path, a stream URL, an image folder or a file."""
    if value == "synthetic":
        return {"source": "synthetic"}
    if value.isdigit() or value.startswith("/dev/video"):
        return {"source": "device", "device": int(value) if value.isdigit() else value}
    if "://" in value:
        return {"source": "stream", "url": value}
    if Path(value).is_dir():
        return {"source": "images", "path": str(Path(value).resolve())}
    return {"source": "file", "path": str(Path(value).resolve())}


def build_overrides(
    options: UpOptions, serial_port: str, frame_dir: Path, store_dir: Path | None = None
) -> dict[str, dict[str, Any]]:
    """Local configuration layered over the recipes' DefaultConfiguration.

    ``store_dir``: the model-updater's store (see the module docstring); None leaves its default.
    """
    overrides: dict[str, dict[str, Any]] = {
        "com.vlaedge.Actuator": {"serialPort": serial_port},
        "com.vlaedge.Camera": {"frameDir": str(frame_dir)},
        "com.vlaedge.Inference": {"frameDir": str(frame_dir)},
    }
    if store_dir is not None:
        overrides[UPDATER] = {"storeDir": str(store_dir)}
    if options.camera is not None:
        overrides["com.vlaedge.Camera"]["cameras"] = [{"name": "front", **camera_source(options.camera)}]
    if options.policy is not None:
        path = Path(options.policy).expanduser().resolve()
        overrides["com.vlaedge.Inference"]["policyPath"] = str(path)
        overrides.setdefault(UPDATER, {})["model"] = starting_model(path)
    if options.config is not None:
        try:
            extra = yaml.safe_load(options.config.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigurationError(f"cannot read --config {options.config}: {exc}") from exc
        if not isinstance(extra, dict) or not all(isinstance(v, dict) for v in extra.values()):
            raise ConfigurationError(f"--config {options.config} must map component names to configuration objects")
        for component, values in extra.items():
            ours = overrides.setdefault(component, {})
            if component == UPDATER and any(key in values for key in MODEL_KEYS):
                for key in MODEL_KEYS:  # the file names the model: ours must not make it two
                    ours.pop(key, None)
            ours.update(values)
    if options.calibration is not None:
        actuator = overrides.setdefault(ACTUATOR, {})
        given = [key for key in CALIBRATION_KEYS if actuator.get(key)]
        if given:
            raise ConfigurationError(
                f"--calibration and the {ACTUATOR} {'/'.join(given)} of --config {options.config} both give a "
                "calibration; keep one"
            )
        actuator["calibration"] = calibration_override(options.calibration, actuator)
        actuator["calibrationFile"] = ""
    return overrides


def starting_model(path: Path) -> dict[str, str]:
    """The updater's ``model`` for ``--policy DIR``: verified from DIR when it has a manifest, else adopted."""
    from vla_edge.models import MANIFEST_FILE

    if (path / MANIFEST_FILE).is_file():
        return {"source": "local", "path": str(path)}
    return {"source": "image"}


def calibration_override(path: Path, actuator: Mapping[str, Any]) -> dict[str, dict[str, int]]:
    """``--calibration FILE`` as the actuator's inline calibration, checked against its joints (the
    actuator's defaults with ``actuator``'s overrides on top) as ``vla-edge arm calibration import`` does."""
    from vla_edge.components.actuator.config import ActuatorConfig
    from vla_edge.components.base import load_config
    from vla_edge.motors.feetech.arm_calibration import (
        calibrated_config,
        inline_calibration,
    )
    from vla_edge.motors.feetech.arm_setup import ArmCliError, ArmSetup

    raw = {key: value for key, value in actuator.items() if key not in CALIBRATION_KEYS}
    config = load_config(ActuatorConfig, raw)
    try:
        inline = inline_calibration(path, config)
        calibrated_config(ArmSetup(config, raw), inline)
    except ArmCliError as exc:
        raise ConfigurationError(f"--calibration: {exc}") from exc
    return inline


def _wait_for_core(run_dir: Path, core: subprocess.Popen[bytes], timeout_s: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    state_file = run_dir / "core.json"
    while time.monotonic() < deadline:
        if core.poll() is not None:
            raise CoreError(f"the local core exited with {core.returncode}; see {run_dir / 'logs' / 'core.log'}")
        if state_file.is_file():
            try:
                return json.loads(state_file.read_text())
            except json.JSONDecodeError:
                pass  # written atomically by the core, but be tolerant of a reader racing a writer
        time.sleep(0.1)
    raise CoreError(f"the local core did not come up within {timeout_s:.0f} s; see {run_dir / 'logs' / 'core.log'}")


def run_up(options: UpOptions) -> int:
    """Run the suite; returns the process exit code (0: healthy run with actions applied)."""
    from vla_edge.bus.ipc import GreengrassIpcBus
    from vla_edge.core.server import component_environment
    from vla_edge.monitor import SuiteMonitor

    recipes = find_recipes_dir(options.recipes_dir)
    run_dir = options.run_dir or Path(tempfile.mkdtemp(prefix="vla-edge-"))
    run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    logs = run_dir / "logs"
    logs.mkdir(exist_ok=True)
    frame_dir = frame_dir_for(run_dir)
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    emulator: RemoteArmEmulator | None = None
    core: subprocess.Popen[bytes] | None = None
    supervisor: Supervisor | None = None
    monitor: SuiteMonitor | None = None
    bus = None
    try:
        if options.serial_port is None:
            # A process of its own, not a thread: the emulated servos must answer within the actuator's
            # packet timeout whatever this process is busy with.
            emulator = RemoteArmEmulator()
        serial_port = options.serial_port or emulator.device_path  # type: ignore[union-attr]
        overrides_path = run_dir / "overrides.json"
        overrides = build_overrides(options, serial_port, frame_dir, run_dir / STORE_DIRNAME)
        overrides_path.write_text(json.dumps(overrides, indent=2))
        argv = [sys.executable, "-m", "vla_edge.core", "serve", "--run-dir", str(run_dir), "--overrides", str(overrides_path)]
        for component in COMPONENTS:
            argv += ["--recipe", str(recipes / component.recipe_dir / "recipe.yaml")]
        with (logs / "core.log").open("ab") as core_log:
            core = subprocess.Popen(argv, stdout=core_log, stderr=subprocess.STDOUT, start_new_session=True)  # noqa: S603
        _wait_for_core(run_dir, core)
        common = {"PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1"}
        if options.cache_dir is not None:
            common["VLA_EDGE_CACHE"] = str(options.cache_dir)
        specs = [
            ProcessSpec(
                c.short,
                [sys.executable, "-m", c.module],
                {**common, **component_environment(run_dir, c.name)},
                logs / f"{c.short}.log",
            )
            for c in COMPONENTS
        ]
        monitor_env = component_environment(run_dir, MONITOR_IDENTITY)
        bus = GreengrassIpcBus.connect(environment=monitor_env)
        monitor = SuiteMonitor(bus)
        monitor.start()
        supervisor = Supervisor(specs, on_change=_log_change)
        supervisor.start()
        log.info("suite starting; run directory %s (component logs in %s)", run_dir, logs)
        return _watch(options, supervisor, monitor, stop, run_dir)
    finally:
        statuses = supervisor.stop() if supervisor else {}
        if monitor is not None:
            monitor.close()
        if bus is not None:
            bus.close()
        if core is not None:
            terminate(core, 10)
        if emulator is not None:
            emulator.stop()
        shutil.rmtree(frame_dir, ignore_errors=True)  # rings of a crashed camera; a clean stop removed its own
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if statuses:
            log.info("stopped: %s", ", ".join(f"{n}={s.state}" for n, s in statuses.items()))


def _watch(options: UpOptions, supervisor: Supervisor, monitor: Any, stop: threading.Event, run_dir: Path) -> int:
    shorts = [c.short for c in COMPONENTS]
    interactive = options.status_stream.isatty()
    started = time.monotonic()
    running_since: float | None = None
    last_line = 0.0
    while not stop.wait(0.2):
        now = time.monotonic()
        statuses = supervisor.statuses()
        if running_since is None:
            if monitor.components_running(shorts):
                running_since = now
                log.info("all components RUNNING after %.1f s", now - started)
            elif now - started > options.startup_timeout_s:
                log.error("components not RUNNING after %.0f s; see logs in %s", options.startup_timeout_s, run_dir)
                break
        if _broken(statuses):
            break  # the nucleus gave up on a component: the suite cannot do its job
        if running_since is not None and options.duration_s is not None and now - running_since >= options.duration_s:
            break
        if now - last_line >= 1.0:
            last_line = now
            line = monitor.status_line()
            if interactive:
                options.status_stream.write("\r" + line + "\033[K")
                options.status_stream.flush()
            elif int(now - started) % 5 == 0:
                log.info("%s", line)
    if interactive:
        options.status_stream.write("\n")
    statuses = supervisor.statuses()
    summary = monitor.summary()
    summary["run_s"] = round(time.monotonic() - (running_since or started), 2)
    summary["run_dir"] = str(run_dir)
    summary["components"] = {
        name: {"state": s.state, "restarts": s.restarts, "exit_codes": s.exit_codes} for name, s in statuses.items()
    }
    broken = _broken(statuses)
    summary["ok"] = not broken and running_since is not None and summary["actions_applied"] > 0
    if options.json_summary:
        sys.stdout.write(json.dumps(summary, indent=2) + "\n")
    else:
        log.info("summary: %s", json.dumps(summary))
    if broken:
        log.error("BROKEN components: %s; their logs are in %s", ", ".join(broken), run_dir / "logs")
    return 0 if summary["ok"] else 1


def _broken(statuses: dict[str, ProcessStatus]) -> list[str]:
    return sorted(name for name, status in statuses.items() if status.state == "BROKEN")


def _log_change(status: ProcessStatus) -> None:
    log.info("component %s is %s (starts %d, errors %d)", status.name, status.state, status.starts, status.errors)
