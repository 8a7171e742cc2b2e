"""The model updater's delivery path: download, memory while downloading, and the switch under a running arm.

1. Download throughput. A LeRobot-shaped model (config, processors, one large
   ``model.safetensors`` of random bytes with a valid header; ``--size-mib``) lies on moto's S3
   server on loopback. Each download runs in a fresh child process: ours,
   ``S3ModelSource.fetch`` (ranged GETs of ``--chunk-mib``, sha256 while writing, fsync, verified
   against the manifest), beside boto3's plain ``client.download_file`` of the same objects from
   the same server, in the same run, alternating, ``--repeats`` times each. A third row, one
   plain GET per file read and dropped, is what the server itself delivers (no disk, no hashing).
2. Memory. Each child's peak RSS (VmHWM, reset after imports) beside the download size: the
   download is many times larger than what the process grows by, because ours streams.
3. Switch. A real rollout in process (see ``_model_update_switch.py``): the actuator ticking at
   30 Hz in its own process, the inference component serving ACT ``bench-act`` 1 (ResNet-18,
   random weights), the model-updater told by a configuration change to roll out version 2
   (source ``local``): fetch + verify + install, stage (the validator subprocess, then a load
   beside the serving model), activate, first chunk. Reported: each step's time, verified-to-
   serving, and the actuator's ticks in the switch window (verified to serving) beside a
   baseline window of the same length just before the change, and a window as long after it.

How busy the machine was is printed with each part (the 1-minute load average before it, the
CPU steal from ``/proc/stat`` during it): on a shared virtual machine it explains more of the
tick figures than the code does. There the emulator itself misses its replies (bus errors,
fault stops in any window); ``--arm fake`` swaps it for the tests' in-memory servo bus, so the
windows show only what the switch does to scheduling.

    python benchmarks/model_update.py [--size-mib 512] [--repeats 2] [--baseline-s 30] [--arm emulator|fake]
                                      [--skip-download] [--skip-switch] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the _model_update_* helpers beside this file

from _model_update_download import Download, S3Fixture
from _model_update_switch import SwitchResult, quiet_logs, run_switch

T = TypeVar("T")
METHODS = {
    "ours": "S3ModelSource.fetch (ours)",
    "boto3": "boto3 download_file",
    "get": "server ceiling: 1 GET/file",
}


def cpu_times() -> list[int]:
    """The aggregate ``cpu`` line of /proc/stat: user nice system idle iowait irq softirq steal ..."""
    return [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]


def with_steal(work: Callable[[], T]) -> tuple[T, dict[str, float | None]]:
    """Run ``work``; also how busy the machine was: the 1-minute load average before it (other work on
    the machine) and the share of CPU time the hypervisor stole meanwhile (None without /proc)."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    try:
        before = cpu_times()
    except (OSError, ValueError, IndexError):
        return work(), {"load_1min": load, "steal": None}
    result = work()
    delta = [b - a for a, b in zip(before, cpu_times(), strict=False)]
    total = sum(delta[:8])
    return result, {"load_1min": load, "steal": delta[7] / total if total and len(delta) > 7 else None}


def run_downloads(size_mib: float, chunk_mib: float, repeats: int, workdir: Path | None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="vla-edge-bench-", dir=workdir) as tmp:
        started = time.perf_counter()
        fixture = S3Fixture(Path(tmp), int(size_mib * 1024 * 1024))
        setup_s = time.perf_counter() - started
        runs: dict[str, list[Download]] = {method: [] for method in METHODS}
        try:
            for index in range(repeats):
                order = ["ours", "boto3"] if index % 2 == 0 else ["boto3", "ours"]
                for method in [*order, "get"]:
                    runs[method].append(fixture.download(method, chunk_mib))
        finally:
            fixture.stop()
        return {"bytes": fixture.total_bytes, "files": len(fixture.manifest.files), "setup_s": setup_s,
                "manifest_hash_s": fixture.hash_s, "chunk_mib": chunk_mib, "runs": runs}


DOWNLOAD_NOTES = """
  MB = 1e6 bytes. Each child makes its client and one HeadBucket, then resets VmHWM (/proc/self/clear_refs 5):
  'RSS before' is its RSS then, 'peak RSS' its VmHWM after the download, growth the difference (max over runs).
  Ours hashes every byte (sha256), fsyncs and renames each file; download_file does neither. moto reads the whole
  object for every ranged GET, so ranged throughput here is bounded by the server, not by either client."""

SWITCH_NOTES = """
  switch = verified -> serving, of which validate = validating -> loading report, load = loading -> staged;
  baseline = as long as switch, ending at the configuration change (at most --baseline-s long);
  after = as long as switch, from serving (with probation 0, v1 is discarded and the store pruned in it).
  expected = seconds x 30; ticks = joint states published; w/ action = ticks that wrote an action;
  missed = expected - w/ action (+-1 at a window's edges); starved, overruns, stale = deltas of the
  actuator's starved_ticks, tick_overruns and actions_dropped.stale (sampled every 50 ms);
  longest gap = longest stretch without a written action; tick p99 = 99th percentile tick interval."""


def render_downloads(result: dict[str, Any], steal: dict[str, float | None]) -> list[str]:
    size_mb = result["bytes"] / 1e6
    runs: dict[str, list[Download]] = result["runs"]
    lines = [
        (f"1+2. download of a {size_mb:.0f} MB model ({result['files']} files) from moto S3 on loopback, one child "
         f"process per download, {len(runs['ours'])} run(s) each{_steal(steal)}"),
        "",
        (f"  {'method':<29} {'MB/s p50':>8}  {'runs MB/s':<17} {'RSS before':>10} {'peak RSS':>9} {'growth':>8} "
         f"{'download/growth':>15}"),
    ]
    medians = {}
    for method, label in METHODS.items():
        done = runs[method]
        medians[method] = statistics.median(d.mb_per_s for d in done)
        growth = max(d.growth_mb for d in done)
        ratio = f"{size_mb / growth:.0f}x" if growth > 0.05 else f">{size_mb / 0.05:.0f}x"
        lines.append(
            f"  {label:<29} {medians[method]:>8.1f}  {' '.join(f'{d.mb_per_s:.1f}' for d in done):<17} "
            f"{max(d.rss_before_mb for d in done):>7.1f} MB {max(d.peak_rss_mb for d in done):>6.1f} MB "
            f"{growth:>+5.1f} MB {ratio:>15}"
        )
    growth_ours = max(d.growth_mb for d in runs["ours"])
    growth_boto = max(d.growth_mb for d in runs["boto3"])
    lines += [
        "",
        (f"  throughput ours / boto3 download_file: {medians['ours'] / medians['boto3']:.2f}x; ours / server "
         f"ceiling: {medians['ours'] / medians['get']:.2f}x"),
        (f"  memory: ours grew {growth_ours:.1f} MB while moving {size_mb:.0f} MB ({result['chunk_mib']:g} MiB range "
         f"requests read in 64 KiB pieces); boto3 grew {growth_boto:.1f} MB (8 MiB parts, 10 threads)"),
        *DOWNLOAD_NOTES.splitlines(),
        f"  Set-up (write, hash, upload the model): {result['setup_s']:.0f} s.",
    ]
    return lines


def render_switch(result: SwitchResult, steal: dict[str, float | None], arm: str) -> list[str]:
    s, figures = result.steps, result.component_figures
    arm_words = "STS3215 emulator on a pty" if arm == "emulator" else "in-memory FakeServoBus"
    lines = [
        (f"3. switch bench-act 1 -> 2 (ACT, ResNet-18, {result.model_mb:.1f} MB) by the model-updater (source "
         f"local); actuator at 30 Hz in its own process, {arm_words}{_steal(steal)}"),
        "",
        "  step (from bus arrival times)                           s   the component's own figure",
    ]
    rows = [
        ("deploy -> verified (fetch, verify, install)", "deploy_to_verified",
         _fig(figures, "model_updater.download_mbps", "MB/s")),
        ("stage: validation (validator subprocess)", "validation", _fig(figures, "inference.switch_validation_ms", "ms")),
        ("stage: load + warm-up beside the serving model", "load_beside", _fig(figures, "inference.switch_load_ms", "ms")),
        ("stage command -> staged", "stage_command_to_staged", ""),
        ("activate -> first chunk of v2 (serving)", "activate_to_serving",
         _fig(figures, "inference.switch_first_chunk_ms", "ms")),
        ("verified -> serving", "verified_to_serving", _fig(figures, "model_updater.verify_to_serving_s", "s")),
        ("serving -> first v2 action written to the arm", "serving_to_first_v2_action", ""),
    ]
    for label, key, own in rows:
        value = s.get(key)
        lines.append(f"  {label:<48} {'-' if value is None else f'{value:8.3f}':>8}   {own}")
    lines += [
        "",
        (f"  {'window':<9} {'s':>6} {'expected':>8} {'ticks':>6} {'w/ action':>9} {'missed':>7} {'starved':>7} "
         f"{'overruns':>8} {'stale':>6} {'longest gap':>11} {'tick p99':>9}"),
    ]
    for w in result.windows:
        name = f" {w.name}" if w.name in ("validate", "load") else w.name  # parts of the switch window
        lines.append(
            f"  {name:<9} {w.seconds:>6.1f} {w.expected:>8.0f} {w.ticks:>6} {w.executed:>9} {round(w.missed):>7d} "
            f"{w.starved:>7} {w.overruns:>8} {w.stale:>6} {w.longest_gap_ms:>8.0f} ms {_ms(w.tick_p99_ms):>9}"
        )
    base, switch = result.windows[0], result.windows[1]  # then the switch's parts, then "after"
    per_s = [w.missed / w.seconds if w.seconds > 0 else 0.0 for w in (base, switch)]
    lines += [
        "",
        (f"  missed ticks during the switch: {round(switch.missed)} (baseline {round(base.missed)}); per second "
         f"{per_s[1]:.2f} vs {per_s[0]:.2f}; starved ticks {switch.starved} vs {base.starved}"),
        *SWITCH_NOTES.splitlines(),
    ]
    trouble = {k: v for k, v in result.final_counters.items()
               if k.startswith(("bus_errors", "safety.fault", "rejected.", "chunks_dropped"))}
    if trouble:
        lines.append(f"  actuator counters over the whole run: {trouble}")
    return lines


def _fig(figures: dict[str, float | None], key: str, unit: str) -> str:
    """A component's own metric, named as its health reports it."""
    value = figures.get(key)
    return "" if value is None else f"{key.split('.', 1)[1]} {value:.1f} {unit}"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} ms"


def _steal(busy: dict[str, float | None]) -> str:
    load, steal = busy.get("load_1min"), busy.get("steal")
    return (("" if load is None else f"; load {load:.1f} before") +
            ("" if steal is None else f", CPU steal {steal:.0%} during"))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=float, default=512.0, help="model size to download in MiB (default 512)")
    parser.add_argument("--chunk-mib", type=float, default=8.0, help="our range request size in MiB (default 8)")
    parser.add_argument("--repeats", type=int, default=2, help="downloads per method (default 2)")
    parser.add_argument("--baseline-s", type=float, default=30.0,
                        help="steady control before the configuration change (default 30; the baseline window is "
                        "at most this long)")
    parser.add_argument("--probation-s", type=float, default=0.0, help="the updater's probationS (default 0)")
    parser.add_argument("--arm", choices=["emulator", "fake"], default="emulator",
                        help="the actuator's servos: the STS3215 emulator on a pty, or the tests' FakeServoBus")
    parser.add_argument("--packet-timeout-ms", type=float, default=100.0,
                        help="the actuator's packetTimeoutMs against the emulator (default 100; a real bus uses 50)")
    parser.add_argument("--timeout-s", type=float, default=600.0, help="give up on the switch after this long")
    parser.add_argument("--skip-download", action="store_true", help="parts 1 and 2 not run")
    parser.add_argument("--skip-switch", action="store_true", help="part 3 not run")
    parser.add_argument("--workdir", type=Path, default=None, help="where temporary files go (default: the system's)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON instead of tables")
    args = parser.parse_args(argv)
    quiet_logs()
    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
    results: dict[str, Any] = {"machine": f"{platform.machine()}, CPython {platform.python_version()}, "
                                          f"{os.cpu_count()} CPUs"}
    lines = [f"model update delivery path ({results['machine']})", ""]
    if not args.skip_download:
        downloads, steal = with_steal(lambda: run_downloads(args.size_mib, args.chunk_mib, args.repeats, args.workdir))
        results["download"] = {**downloads, "machine_busy": steal,
                               "runs": {m: [asdict(d) for d in r] for m, r in downloads["runs"].items()}}
        lines += [*render_downloads(downloads, steal), ""]
    if not args.skip_switch:
        with contextlib.redirect_stdout(sys.stderr):  # LeRobot prints while loading: keep stdout for the results
            switch, steal = with_steal(lambda: run_switch(args.baseline_s, args.probation_s, args.timeout_s,
                                                          args.packet_timeout_ms, args.arm, args.workdir))
        results["switch"] = {**asdict(switch), "machine_busy": steal,
                             "windows": [{**asdict(w), "missed": w.missed} for w in switch.windows]}
        lines += render_switch(switch, steal, args.arm)
    print(json.dumps(results, indent=2) if args.json else "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
