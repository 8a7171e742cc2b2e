"""Camera frames from one process to another: the shared-memory ring beside Greengrass IPC, then the real camera.

Frames are 640x480x3 uint8 by default (921,600 bytes) at 30 fps. In the first two phases
they are pre-rendered by the synthetic camera so that rendering does not count against
either transport; the third runs the real camera component. The phases run one after the
other, each with its own processes (spawned, so nothing is shared but the transport):

* shm: a writer process puts each frame into a :class:`vla_edge.cameras.ring.FrameRing`;
  a reader process waits with ``FrameRingReader.wait_next`` (it polls the header every
  ~150 µs) and copies the pixels out. Latency = reader holds its copy - the slot's
  ``t_written`` (``time.time()`` at commit, stored in the slot by the writer).
* ipc: the same frames as binary messages through the local core (``python -m
  vla_edge.core serve`` in its own process, two benchmark recipes granting publish and
  subscribe on one topic); publisher and subscriber are ``GreengrassIpcBus`` connections
  in separate processes. Latency = subscriber's handler holds the decoded bytes - the
  publisher's ``time.time()`` just before ``publish``, carried in the payload.
* camera: the camera component itself (``benchmarks/_camera_phase.py``): the local core
  serves ``components/camera/recipe.yaml`` with overrides for one synthetic camera
  ``bench`` of the same size and rate, and ``python -m vla_edge.components.camera`` runs
  as its own process with the environment ``vla-edge up`` gives it. A reader process
  follows ``<frameDir>/bench.ring`` with ``wait_next`` as in the shm phase. Captured =
  the reader's seq range; latency to ``t_written`` as above, and to ``t_capture`` (the
  worker's ``time.time()`` when the frame left the source, so it adds the ring write).
  The camera process's CPU is the whole component: pacing, synthetic rendering, the ring
  write and a ``FrameReady`` published over IPC per frame. The camera is stopped with
  SIGTERM; the run checks that it exits 0 and removes its ring.

Both latencies subtract two ``time.time()`` readings taken on the same machine
(CLOCK_REALTIME is one system-wide clock; an NTP step during the run would show as an
outlier). Reported per transport: frames sent and received, dropped (sent - received;
the ring reader takes the newest frame, so a slow reader drops instead of lagging),
latency p50/p99/max, how long the sender's call took (``write`` vs ``publish``), and CPU
of each process as utime+stime from ``/proc/<pid>/stat`` over the measured wall time
(100 % = one core). The first ``--warmup`` frames of each phase are sent but not measured.
``--phases`` picks phases (default all: ``shm,ipc,camera``); the comparison lines need shm and ipc.

    python benchmarks/camera_transport.py [--seconds 60] [--fps 30] [--width 640] [--height 480]
                                          [--phases shm,ipc,camera] [--json]
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import os
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _support import bench_recipe, connect

from vla_edge.supervisor import terminate

TOPIC = "vla-edge/bench/frames"
PUBLISHER = "com.vlaedge.bench.FramePublisher"
SUBSCRIBER = "com.vlaedge.bench.FrameSubscriber"
CAMERA = "bench"
HEADER = struct.Struct("<Qd")  # seq, publisher's time.time() before publish
SPAWN = multiprocessing.get_context("spawn")
PHASES = ("shm", "ipc", "camera")


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` from /proc/<pid>/stat (fields 14 and 15), in seconds."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU share of a process over a wall-clock window, from /proc/<pid>/stat."""

    def __init__(self, pid: int | None = None) -> None:
        self.pid = pid or os.getpid()
        self.start()

    def start(self) -> None:
        self._cpu, self._wall = cpu_seconds(self.pid), time.monotonic()

    def percent(self) -> float:
        return 100.0 * (cpu_seconds(self.pid) - self._cpu) / max(time.monotonic() - self._wall, 1e-9)


def frames(width: int, height: int, count: int = 8) -> list[Any]:
    from vla_edge.cameras.base import CameraConfig
    from vla_edge.cameras.synthetic import SyntheticCamera

    camera = SyntheticCamera(CameraConfig(width=width, height=height))
    return [camera.render(i, i / 30) for i in range(count)]


def paced(total: int, fps: float):
    """Yield 1..total, each at its slot of a fixed-rate schedule (late frames are not made up for)."""
    start = time.monotonic()
    for seq in range(1, total + 1):
        delay = start + (seq - 1) / fps - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        yield seq


# -- shared-memory ring -------------------------------------------------------------------------------


def shm_writer(directory: str, args: dict[str, Any], ready: Any, go: Any, results: Any) -> None:
    from vla_edge.cameras.ring import FrameRing

    images = frames(args["width"], args["height"])
    ring = FrameRing.create(directory, CAMERA, args["height"], args["width"], 3, args["slots"])
    ready.set()
    go.wait()
    calls: list[float] = []
    meter = CpuMeter()
    for seq in paced(args["total"], args["fps"]):
        if seq == args["warmup"] + 1:
            meter.start()
        started = time.perf_counter()
        ring.write(images[seq % len(images)], time.time())
        if seq > args["warmup"]:
            calls.append(time.perf_counter() - started)
    results.put({"role": "writer", "sent": len(calls), "cpu_pct": meter.percent(), "send_call_s": calls})
    time.sleep(0.5)  # let the reader take the last frame before the ring goes away
    ring.close()


def shm_reader(path: str, args: dict[str, Any], ready: Any, results: Any) -> None:
    from vla_edge.cameras.ring import FrameRingReader

    reader = FrameRingReader.open(path)
    ready.set()
    latencies: list[float] = []
    meter, last = CpuMeter(), 0
    while last < args["total"]:
        frame = reader.wait_next(last, timeout=10.0)
        received = time.time()
        if frame is None:
            break
        if frame.seq > args["warmup"]:
            if not latencies:
                meter.start()
            latencies.append(received - frame.t_written)
        last = frame.seq
    results.put({"role": "reader", "received": len(latencies), "cpu_pct": meter.percent(), "latency_s": latencies,
                 "reader": {"skipped": reader.skipped, "retries": reader.retries, "overwritten": reader.overwritten}})
    reader.close()


def bench_shm(args: dict[str, Any]) -> dict[str, Any]:
    base = "/dev/shm" if os.path.isdir("/dev/shm") else None
    directory = tempfile.mkdtemp(prefix="vla-bench-ring-", dir=base)
    ready_w, ready_r, go, results = SPAWN.Event(), SPAWN.Event(), SPAWN.Event(), SPAWN.Queue()
    writer = SPAWN.Process(target=shm_writer, args=(directory, args, ready_w, go, results), daemon=True)
    writer.start()
    try:
        if not ready_w.wait(60):
            raise RuntimeError("the ring writer did not start")
        reader = SPAWN.Process(target=shm_reader, args=(f"{directory}/{CAMERA}.ring", args, ready_r, results),
                               daemon=True)
        reader.start()
        if not ready_r.wait(60):
            raise RuntimeError("the ring reader did not start")
        go.set()
        reports = {report["role"]: report for report in (_get(results, args), _get(results, args))}
        writer.join(30)
        reader.join(30)
    finally:
        for process in multiprocessing.active_children():
            process.kill()
        shutil.rmtree(directory, ignore_errors=True)
    return summarise(reports["writer"], reports["reader"], {"reader_cpu_pct": reports["reader"]["cpu_pct"],
                                                             **reports["reader"]["reader"]})


# -- Greengrass IPC through the local core ----------------------------------------------------------


def ipc_publisher(environment: dict[str, str], args: dict[str, Any], ready: Any, go: Any, measuring: Any,
                  results: Any) -> None:
    from vla_edge.bus.ipc import GreengrassIpcBus
    from vla_edge.errors import BusError

    images = [image.tobytes() for image in frames(args["width"], args["height"])]
    bus = connect(GreengrassIpcBus, environment)
    ready.set()
    go.wait()
    calls: list[float] = []
    errors = 0
    meter = CpuMeter()
    for seq in paced(args["total"], args["fps"]):
        if seq == args["warmup"] + 1:
            meter.start()
            measuring.set()
        started = time.perf_counter()
        try:
            bus.publish(TOPIC, HEADER.pack(seq, time.time()) + images[seq % len(images)])
        except BusError:  # counted: a frame the core refused is a dropped frame
            errors += 1
        if seq > args["warmup"]:
            calls.append(time.perf_counter() - started)
    results.put({"role": "writer", "sent": len(calls), "cpu_pct": meter.percent(), "send_call_s": calls,
                 "publish_errors": errors})
    bus.close()


def ipc_subscriber(environment: dict[str, str], args: dict[str, Any], ready: Any, all_in: Any, finish: Any,
                   results: Any) -> None:
    from vla_edge.bus.ipc import GreengrassIpcBus

    latencies: list[float] = []
    meter = CpuMeter()
    expected = args["total"] - args["warmup"]

    def on_frame(_topic: str, payload: Any) -> None:
        received = time.time()
        seq, t_sent = HEADER.unpack_from(payload)
        if seq > args["warmup"]:
            if not latencies:
                meter.start()
            latencies.append(received - t_sent)
            if len(latencies) >= expected:
                all_in.set()

    bus = connect(GreengrassIpcBus, environment)
    bus.subscribe(TOPIC, on_frame)
    ready.set()
    finish.wait()
    cpu = meter.percent()
    bus.close()
    results.put({"role": "reader", "received": len(latencies), "cpu_pct": cpu, "latency_s": list(latencies)})


def bench_ipc(args: dict[str, Any]) -> dict[str, Any]:
    from vla_edge.core.server import component_environment

    workdir = Path(tempfile.mkdtemp(prefix="vla-bench-", dir="/tmp"))
    run_dir = workdir / "run"
    recipes = [bench_recipe(workdir, PUBLISHER, "aws.greengrass#PublishToTopic", TOPIC),
               bench_recipe(workdir, SUBSCRIBER, "aws.greengrass#SubscribeToTopic", TOPIC)]
    command = [sys.executable, "-m", "vla_edge.core", "serve", "--run-dir", str(run_dir), "--log-level", "WARNING"]
    for recipe in recipes:
        command += ["--recipe", str(recipe)]
    core = subprocess.Popen(command)
    events = {name: SPAWN.Event() for name in ("pub_ready", "sub_ready", "go", "measuring", "all_in", "finish")}
    results = SPAWN.Queue()
    try:
        deadline = time.monotonic() + 30
        while not (run_dir / "core.json").exists():
            if core.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the local core did not start")
            time.sleep(0.05)
        subscriber = SPAWN.Process(target=ipc_subscriber, daemon=True, args=(
            component_environment(run_dir, SUBSCRIBER), args, events["sub_ready"], events["all_in"],
            events["finish"], results))
        publisher = SPAWN.Process(target=ipc_publisher, daemon=True, args=(
            component_environment(run_dir, PUBLISHER), args, events["pub_ready"], events["go"], events["measuring"],
            results))
        subscriber.start()
        publisher.start()
        if not (events["sub_ready"].wait(60) and events["pub_ready"].wait(60)):
            raise RuntimeError("publisher or subscriber did not connect")
        events["go"].set()
        if not events["measuring"].wait(60 + args["warmup"] / args["fps"]):
            raise RuntimeError("the publisher did not get through the warm-up")
        core_meter = CpuMeter(core.pid)
        writer = _get(results, args)
        core_cpu = core_meter.percent()
        events["all_in"].wait(10)  # whatever has not arrived 10 s after the last publish counts as dropped
        events["finish"].set()
        reader = _get(results, args)
        publisher.join(30)
        subscriber.join(30)
    finally:
        for process in multiprocessing.active_children():
            process.kill()
        terminate(core, 30)
        shutil.rmtree(workdir, ignore_errors=True)
    return summarise(writer, reader, {"reader_cpu_pct": reader["cpu_pct"], "core_cpu_pct": core_cpu,
                                      "publish_errors": writer["publish_errors"]})



def _get(results: Any, args: dict[str, Any]) -> dict[str, Any]:
    return results.get(timeout=120 + args["total"] / args["fps"])


# -- report -------------------------------------------------------------------------------------------


def percentiles(seconds: list[float]) -> dict[str, float]:
    if not seconds:
        return {"p50_ms": float("nan"), "p99_ms": float("nan"), "max_ms": float("nan")}
    ordered = sorted(seconds)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return {"p50_ms": statistics.median(ordered) * 1e3, "p99_ms": p99 * 1e3, "max_ms": ordered[-1] * 1e3}


def summarise(writer: dict[str, Any], reader: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    return {"sent": writer["sent"], "received": reader["received"], "dropped": writer["sent"] - reader["received"],
            "latency": percentiles(reader["latency_s"]), "send_call": percentiles(writer["send_call_s"]),
            "writer_cpu_pct": writer["cpu_pct"], **extra}


def render(results: dict[str, Any]) -> str:
    config = results["config"]
    lines = [(f"{config['width']}x{config['height']}x3 uint8 frames ({config['frame_bytes']:,} bytes) at "
              f"{config['fps']:g} fps for {config['seconds']:g} s per transport ({config['warmup']} warm-up frames "
              f"not measured); ring of {config['slots']} slots; Python {results['python']}, {os.cpu_count()} CPUs"), ""]
    header = (f"{'transport':<26} {'sent':>6} {'recv':>6} {'drop':>5} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} "
              f"{'send p50':>9} {'send p99':>9} {'writer CPU':>10} {'reader CPU':>10}")
    lines += [header, "-" * len(header)]
    for name, key in (("shared-memory ring", "shm"), ("Greengrass IPC (local core)", "ipc")):
        if key not in results:
            continue
        r = results[key]
        lat, call = r["latency"], r["send_call"]
        lines.append(f"{name:<26} {r['sent']:>6} {r['received']:>6} {r['dropped']:>5} {lat['p50_ms']:>8.3f} "
                     f"{lat['p99_ms']:>8.3f} {lat['max_ms']:>8.3f} {call['p50_ms']:>9.3f} {call['p99_ms']:>9.3f} "
                     f"{r['writer_cpu_pct']:>9.1f}% {r['reader_cpu_pct']:>9.1f}%")
    if "camera" in results:
        r, lat = results["camera"], results["camera"]["latency"]
        lines.append(f"{'camera component (ring)':<26} {r['captured']:>6} {r['received']:>6} {r['dropped']:>5} "
                     f"{lat['p50_ms']:>8.3f} {lat['p99_ms']:>8.3f} {lat['max_ms']:>8.3f} {'-':>9} {'-':>9} "
                     f"{r['camera_cpu_pct']:>9.1f}% {r['reader_cpu_pct']:>9.1f}%")
    lines.append("")
    if "ratio" in results:
        ratio = results["ratio"]
        lines.append(f"IPC / shm latency: p50 x{ratio['p50']:.1f}, p99 x{ratio['p99']:.1f}; "
                     f"writer CPU x{ratio['writer_cpu']:.1f}")
    if "ipc" in results:
        ipc = results["ipc"]
        lines.append(f"local core process CPU during IPC: {ipc['core_cpu_pct']:.1f}%; "
                     f"publish errors: {ipc['publish_errors']}")
    if "shm" in results:
        shm = results["shm"]
        lines.append(f"ring reader: skipped {shm['skipped']}, retries {shm['retries']}, "
                     f"overwritten {shm['overwritten']}")
    if "targets" in results:
        lines.append(f"targets: shm p99 <= 1 ms: {'met' if results['targets']['shm_p99_le_1ms'] else 'MISSED'}; "
                     f"shm >= 10x faster than IPC (p50 and p99): "
                     f"{'met' if results['targets']['ipc_over_shm_ge_10x'] else 'MISSED'}")
    if "camera" in results:
        lines += render_camera(results["camera"], config)
    return "\n".join(lines)


def render_camera(r: dict[str, Any], config: dict[str, Any]) -> list[str]:
    cap = r["capture_latency"]
    exit_code = "did not exit in 30 s" if r["camera_exit_code"] is None else f"exit code {r['camera_exit_code']}"
    lines = [(f"camera process CPU: {r['camera_cpu_pct']:.1f}% of one core (synthetic rendering at "
              f"{config['width']}x{config['height']}, ring write, FrameReady over IPC, {config['fps']:g} fps); "
              f"local core {r['core_cpu_pct']:.1f}%"),
             (f"camera component: capture->reader p50 {cap['p50_ms']:.3f} ms, p99 {cap['p99_ms']:.3f} ms; reader "
              f"skipped {r['skipped']}, retries {r['retries']}, overwritten {r['overwritten']}"),
             (f"camera stop (SIGTERM): {exit_code} ({'ok' if r['camera_exit_code'] == 0 else 'FAILED'}); "
              f"ring {'removed' if r['ring_removed'] else 'LEFT BEHIND'}"
              f"{'; reader timed out waiting for a frame' if r['reader_timed_out'] else ''}")]
    if "camera_log_tail" in r:
        lines.append(r["camera_log_tail"].strip("\n"))
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="measured seconds per transport (default 60)")
    parser.add_argument("--fps", type=float, default=30.0, help="frames per second (default 30)")
    parser.add_argument("--width", type=int, default=640, help="frame width (default 640)")
    parser.add_argument("--height", type=int, default=480, help="frame height (default 480)")
    parser.add_argument("--slots", type=int, default=8, help="ring slots (default 8)")
    parser.add_argument("--warmup", type=int, default=30, help="frames sent before measuring (default 30)")
    parser.add_argument("--phases", default=",".join(PHASES), help="comma-separated phases to run, of "
                        f"{', '.join(PHASES)} (default all)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")
    args = parser.parse_args(argv)
    phases = [phase.strip() for phase in args.phases.split(",") if phase.strip()]
    if not phases or set(phases) - set(PHASES):
        parser.error(f"--phases takes a comma-separated subset of {','.join(PHASES)}, not {args.phases!r}")
    logging.basicConfig(level=logging.WARNING)
    config = {"seconds": args.seconds, "fps": args.fps, "width": args.width, "height": args.height,
              "slots": args.slots, "warmup": args.warmup, "total": args.warmup + round(args.seconds * args.fps),
              "frame_bytes": args.width * args.height * 3}
    results: dict[str, Any] = {"config": config, "python": sys.version.split()[0], "phases": phases}
    if "shm" in phases:
        results["shm"] = bench_shm(config)
    if "ipc" in phases:
        results["ipc"] = bench_ipc(config)
    if "camera" in phases:
        # beside this file, on sys.path when run as a script
        from _camera_phase import bench_camera

        results["camera"] = bench_camera(config)
    if "shm" in results and "ipc" in results:
        shm, ipc = results["shm"], results["ipc"]
        results["ratio"] = {"p50": ipc["latency"]["p50_ms"] / shm["latency"]["p50_ms"],
                            "p99": ipc["latency"]["p99_ms"] / shm["latency"]["p99_ms"],
                            "writer_cpu": ipc["writer_cpu_pct"] / max(shm["writer_cpu_pct"], 1e-9)}
        results["targets"] = {"shm_p99_le_1ms": shm["latency"]["p99_ms"] <= 1.0,
                              "ipc_over_shm_ge_10x": min(results["ratio"]["p50"], results["ratio"]["p99"]) >= 10}
    print(json.dumps(results, indent=2) if args.json else render(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
