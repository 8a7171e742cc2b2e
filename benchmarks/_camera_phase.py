"""The "camera" phase of ``camera_transport.py``: the real camera component writing its ring.

The local core serves ``components/camera/recipe.yaml`` with overrides for one synthetic
camera; the component runs as its own process, started as ``vla-edge up`` starts it
(``python -m vla_edge.components.camera`` with the core's component environment and
``PYTHONUNBUFFERED=1``); a reader process follows ``<frameDir>/bench.ring`` with
``FrameRingReader.wait_next``. So the camera's CPU here is the whole component: pacing,
synthetic rendering, the ring write and a ``FrameReady`` published over IPC per frame.
The component's and the core's logs go to files; the component's is shown if it fails.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from camera_transport import CAMERA, SPAWN, CpuMeter, _get, percentiles

from vla_edge.supervisor import terminate

COMPONENT = "com.vlaedge.Camera"
RECIPE = Path(__file__).resolve().parents[1] / "components" / "camera" / "recipe.yaml"


def camera_reader(path: str, camera_pid: int, args: dict[str, Any], measuring: Any, results: Any) -> None:
    from vla_edge.cameras.ring import FrameRingReader

    deadline = time.monotonic() + 60
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            results.put({"error": f"{path} did not appear within 60 s"})
            return
        time.sleep(0.01)
    reader = FrameRingReader.open(path)
    to_written: list[float] = []
    to_capture: list[float] = []
    meter, camera_meter = CpuMeter(), CpuMeter(camera_pid)
    first = last = 0
    end = float("inf")
    base: dict[str, int] = {}
    while time.monotonic() < end:
        frame = reader.wait_next(last, timeout=10.0)
        received = time.time()
        if frame is None:
            break
        last = frame.seq
        if frame.seq <= args["warmup"]:
            continue
        if not first:  # counters and CPU from here: gaps before the first measured frame do not count
            first, end = frame.seq, time.monotonic() + args["seconds"]
            meter.start()
            camera_meter.start()
            measuring.set()
            base = {"skipped": reader.skipped, "retries": reader.retries, "overwritten": reader.overwritten}
        to_written.append(received - frame.t_written)
        to_capture.append(received - frame.t_capture)
    results.put({"captured": last - first + 1 if first else 0, "received": len(to_written),
                 "reader_cpu_pct": meter.percent(), "camera_cpu_pct": camera_meter.percent(),
                 "latency_s": to_written, "capture_latency_s": to_capture, "timed_out": frame is None,
                 **{key: getattr(reader, key) - value for key, value in base.items()}})
    reader.close()


def bench_camera(args: dict[str, Any]) -> dict[str, Any]:
    from vla_edge.core.server import component_environment

    workdir = Path(tempfile.mkdtemp(prefix="vla-bench-camera-", dir="/tmp"))
    frame_dir = Path(tempfile.mkdtemp(prefix="vla-bench-frames-",
                                      dir="/dev/shm" if os.path.isdir("/dev/shm") else None))
    run_dir, ring, log_path = workdir / "run", frame_dir / f"{CAMERA}.ring", workdir / "camera.log"
    overrides = workdir / "overrides.json"
    overrides.write_text(json.dumps({COMPONENT: {"frameDir": str(frame_dir), "ringSlots": args["slots"], "cameras": [
        {"name": CAMERA, "source": "synthetic", "width": args["width"], "height": args["height"],
         "fps": args["fps"]}]}}))
    with (workdir / "core.log").open("wb") as core_log:  # it warns that the camera may not serve snapshots: expected
        core = subprocess.Popen([sys.executable, "-m", "vla_edge.core", "serve", "--run-dir", str(run_dir),
                                 "--log-level", "WARNING", "--recipe", str(RECIPE), "--overrides", str(overrides)],
                                stdout=core_log, stderr=subprocess.STDOUT)
    camera: subprocess.Popen[bytes] | None = None
    measuring, results = SPAWN.Event(), SPAWN.Queue()
    try:
        deadline = time.monotonic() + 30
        while not (run_dir / "core.json").exists():
            if core.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the local core did not start{_tail(workdir / 'core.log', 'local core')}")
            time.sleep(0.05)
        environment = {**os.environ, **component_environment(run_dir, COMPONENT), "PYTHONUNBUFFERED": "1"}
        with log_path.open("wb") as log:
            camera = subprocess.Popen([sys.executable, "-m", "vla_edge.components.camera"], env=environment,
                                      stdout=log, stderr=subprocess.STDOUT)
        reader = SPAWN.Process(target=camera_reader, args=(str(ring), camera.pid, args, measuring, results),
                               daemon=True)
        reader.start()
        if not measuring.wait(60 + args["warmup"] / args["fps"]):
            raise RuntimeError(f"no frame from the camera past the warm-up{_tail(log_path, 'camera component')}")
        core_meter = CpuMeter(core.pid)
        report = _get(results, args)
        core_cpu = core_meter.percent()
        reader.join(30)
        if "error" in report:
            raise RuntimeError(f"{report['error']}{_tail(log_path, 'camera component')}")
        camera.send_signal(signal.SIGTERM)
        try:
            exit_code: int | None = camera.wait(30)
        except subprocess.TimeoutExpired:
            exit_code = None  # reported as not exiting; killed below
        ring_removed = not ring.exists()
    finally:
        for process in multiprocessing.active_children():
            process.kill()
        if camera is not None and camera.poll() is None:
            camera.kill()
            camera.wait()
        terminate(core, 30)
        log_tail = _tail(log_path, "camera component")
        shutil.rmtree(workdir, ignore_errors=True)
        shutil.rmtree(frame_dir, ignore_errors=True)
    summary = {"captured": report["captured"], "received": report["received"],
               "dropped": report["captured"] - report["received"], "latency": percentiles(report["latency_s"]),
               "capture_latency": percentiles(report["capture_latency_s"]), "camera_cpu_pct": report["camera_cpu_pct"],
               "reader_cpu_pct": report["reader_cpu_pct"], "core_cpu_pct": core_cpu, "skipped": report["skipped"],
               "retries": report["retries"], "overwritten": report["overwritten"],
               "reader_timed_out": report["timed_out"], "camera_exit_code": exit_code, "ring_removed": ring_removed}
    if exit_code != 0 or not ring_removed or report["timed_out"]:
        summary["camera_log_tail"] = log_tail
    return summary


def _tail(path: Path, what: str, lines: int = 20) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return ""
    return f"\n--- {what} log (last lines) ---\n" + "\n".join(text) if text else ""
