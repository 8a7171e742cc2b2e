"""Publish -> receive latency and throughput of ~1 KB JSON messages through the local Greengrass core.

Two components connect over the real IPC socket with the real awsiotsdk client
(via :class:`vla_edge.bus.ipc.GreengrassIpcBus`, the path every component uses):
one publishes, the other subscribes. Beside it, in the same run, the same
payloads go through an in-process ``queue.Queue`` to a consumer thread: the floor
that any inter-process transport is paid against.

Two phases per transport:

* ping-pong: one message in flight; the publisher waits for delivery before the
  next. Latency without queueing.
* stream: the publisher sends back to back (each publish still waits for the
  core's acknowledgement, as ``Bus.publish`` does); throughput in messages/s and
  latency under load.

    python benchmarks/ipc_latency.py [--messages 2000] [--size 1024] [--json]
"""

from __future__ import annotations

import argparse
import json
import logging
import queue
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _support import bench_recipe, connect

from vla_edge.supervisor import terminate

TOPIC = "vla-edge/bench/latency"
PUBLISHER = "com.vlaedge.bench.Publisher"
SUBSCRIBER = "com.vlaedge.bench.Subscriber"


class Receiver:
    """Records one-way latency (ns) of every message it is given, and counts them."""

    def __init__(self) -> None:
        self.latencies_ns: list[int] = []
        self._changed = threading.Condition()

    def __call__(self, _topic: str, payload: Any) -> None:
        now = time.perf_counter_ns()
        with self._changed:
            self.latencies_ns.append(now - payload["t_ns"])
            self._changed.notify_all()

    def reset(self) -> None:
        with self._changed:
            self.latencies_ns = []

    def wait_for(self, count: int, timeout: float = 60.0) -> None:
        with self._changed:
            if not self._changed.wait_for(lambda: len(self.latencies_ns) >= count, timeout):
                raise RuntimeError(f"only {len(self.latencies_ns)} of {count} messages arrived within {timeout} s")


def make_payload(sequence: int, size: int) -> dict[str, Any]:
    """A JSON object of about ``size`` bytes once serialised."""
    body = {"seq": sequence, "t_ns": time.perf_counter_ns(), "pad": ""}
    body["pad"] = "x" * max(0, size - len(json.dumps(body)))
    return body


def run_phases(send: Callable[[dict[str, Any]], None], receiver: Receiver, messages: int, size: int,
               warmup: int) -> dict[str, dict[str, float]]:
    payloads = [make_payload(i, size) for i in range(messages)]
    for payload in payloads[:warmup]:
        payload["t_ns"] = time.perf_counter_ns()
        send(payload)
    receiver.wait_for(warmup)
    receiver.reset()
    for index, payload in enumerate(payloads, start=1):  # ping-pong: one in flight
        payload["t_ns"] = time.perf_counter_ns()
        send(payload)
        receiver.wait_for(index)
    ping_pong = summarise(receiver.latencies_ns, None)
    receiver.reset()
    started = time.perf_counter()
    for payload in payloads:  # stream: back to back
        payload["t_ns"] = time.perf_counter_ns()
        send(payload)
    receiver.wait_for(messages)
    elapsed = time.perf_counter() - started
    return {"ping_pong": ping_pong, "stream": summarise(receiver.latencies_ns, messages / elapsed)}


def summarise(latencies_ns: list[int], rate: float | None) -> dict[str, float]:
    ordered = sorted(latencies_ns)
    p99_index = min(len(ordered) - 1, int(round(0.99 * (len(ordered) - 1))))
    summary = {"p50_us": statistics.median(ordered) / 1000, "p99_us": ordered[p99_index] / 1000,
               "max_us": ordered[-1] / 1000, "count": float(len(ordered))}
    if rate is not None:
        summary["msgs_per_s"] = rate
    return summary


def bench_queue(messages: int, size: int, warmup: int) -> dict[str, dict[str, float]]:
    channel: queue.Queue[dict[str, Any] | None] = queue.Queue()
    receiver = Receiver()

    def consume() -> None:
        while (item := channel.get()) is not None:
            receiver(TOPIC, item)

    consumer = threading.Thread(target=consume, daemon=True)
    consumer.start()
    try:
        return run_phases(channel.put, receiver, messages, size, warmup)
    finally:
        channel.put(None)
        consumer.join(5)


def bench_ipc(messages: int, size: int, warmup: int, in_process: bool) -> dict[str, dict[str, float]]:
    from vla_edge.bus.ipc import GreengrassIpcBus
    from vla_edge.core.server import LocalCore, component_environment

    workdir = Path(tempfile.mkdtemp(prefix="vla-bench-", dir="/tmp"))
    run_dir = workdir / "run"
    recipes = [bench_recipe(workdir, PUBLISHER, "aws.greengrass#PublishToTopic", TOPIC),
               bench_recipe(workdir, SUBSCRIBER, "aws.greengrass#SubscribeToTopic", TOPIC)]
    core: LocalCore | None = None
    process: subprocess.Popen[bytes] | None = None
    try:
        if in_process:
            core = LocalCore(run_dir, recipes).start()
        else:  # as `vla-edge up` runs it: its own process, so it does not share our GIL
            command = [sys.executable, "-m", "vla_edge.core", "serve", "--run-dir", str(run_dir),
                       "--log-level", "WARNING"]
            for recipe in recipes:
                command += ["--recipe", str(recipe)]
            process = subprocess.Popen(command)
            deadline = time.monotonic() + 30
            while not (run_dir / "core.json").exists():
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the local core did not start")
                time.sleep(0.05)
        buses = [connect(GreengrassIpcBus, component_environment(run_dir, name)) for name in (PUBLISHER, SUBSCRIBER)]
        publisher, subscriber = buses
        try:
            receiver = Receiver()
            subscriber.subscribe(TOPIC, receiver)
            results = run_phases(lambda p: publisher.publish(TOPIC, p), receiver, messages, size, warmup)
        finally:
            for bus in buses:
                bus.close()
        if core is not None:
            results["core"] = {k: float(v) for k, v in core.stats().items()}
        return results
    finally:
        if core is not None:
            core.stop()
        if process is not None:
            terminate(process, 30)
        shutil.rmtree(workdir, ignore_errors=True)



def render(results: dict[str, Any]) -> str:
    rows = [("in-process queue.Queue", results["queue"]), ("local core IPC (awsiotsdk)", results["ipc"])]
    lines = [f"{results['messages']} JSON messages of ~{results['size']} bytes per phase; publisher and subscriber "
             f"on separate IPC connections; core in a {results['core_process']}", ""]
    header = f"{'transport':<28} {'phase':<10} {'p50 µs':>10} {'p99 µs':>10} {'max µs':>10} {'msg/s':>10}"
    lines += [header, "-" * len(header)]
    for name, data in rows:
        for phase in ("ping_pong", "stream"):
            figures = data[phase]
            rate = f"{figures['msgs_per_s']:>10.0f}" if "msgs_per_s" in figures else f"{'':>10}"
            lines.append(f"{name:<28} {phase:<10} {figures['p50_us']:>10.1f} {figures['p99_us']:>10.1f} "
                         f"{figures['max_us']:>10.1f} {rate}")
    ratio = results["ratio"]
    lines += ["", f"IPC / queue: ping-pong p50 x{ratio['ping_pong_p50']:.1f}, p99 x{ratio['ping_pong_p99']:.1f}; "
              f"stream throughput x{ratio['stream_throughput']:.3f} (queue is {1 / ratio['stream_throughput']:.0f}x "
              "faster)"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=2000, help="messages per phase (default 2000)")
    parser.add_argument("--size", type=int, default=1024, help="approximate JSON size in bytes (default 1024)")
    parser.add_argument("--warmup", type=int, default=200, help="messages sent before measuring (default 200)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")
    parser.add_argument("--in-process", action="store_true",
                        help="run the core on a thread of this process instead of its own process")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    results: dict[str, Any] = {"messages": args.messages, "size": len(json.dumps(make_payload(0, args.size))),
                               "python": sys.version.split()[0]}
    results["queue"] = bench_queue(args.messages, args.size, args.warmup)
    results["ipc"] = bench_ipc(args.messages, args.size, args.warmup, args.in_process)
    results["core_process"] = "in-process thread" if args.in_process else "separate process"
    results["ratio"] = {
        "ping_pong_p50": results["ipc"]["ping_pong"]["p50_us"] / results["queue"]["ping_pong"]["p50_us"],
        "ping_pong_p99": results["ipc"]["ping_pong"]["p99_us"] / results["queue"]["ping_pong"]["p99_us"],
        "stream_throughput": results["ipc"]["stream"]["msgs_per_s"] / results["queue"]["stream"]["msgs_per_s"],
    }
    print(json.dumps(results, indent=2) if args.json else render(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
