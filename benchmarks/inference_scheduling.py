"""ACT on this CPU at 30 Hz: the inference component's asynchronous scheduling beside LeRobot's synchronous loop.

The policy is built once, in a temporary directory, with LeRobot's own classes at the
size of a SO-101 setup: ``ACTPolicy`` with LeRobot's default ACT architecture (ResNet-18
backbone from random weights, ``pretrained_backbone_weights=None`` so nothing is
downloaded; dim_model 512, 4 encoder / 1 decoder layers, VAE; ``chunk_size`` and
``n_action_steps`` 100), one camera ``observation.images.front`` of 3xHxW,
``observation.state`` 6, ``action`` 6; saved with ``save_pretrained`` together with the
processors of ``make_pre_post_processors`` (simple dataset statistics). Its parameter
count and the latency of one inference (preprocessor -> ``predict_action_chunk`` ->
postprocessor, median of 3 after one warm-up, in this process) are reported.

Each mode then runs in its own spawned process, one after the other, with the same
torch thread count (``--threads``), so the peak RSS is that mode's alone (each process's
own high-water mark, ``VmHWM``; ``ru_maxrss`` is printed beside it but includes the
spawning parent's size, see ``benchmarks/_scheduling_modes.py``). In each, a camera process writes
synthetic WxH frames into a shared-memory ring at ``--hz`` frames/s, and a control clock
ticks at ``--hz`` (``benchmarks/_scheduling_modes.py`` defines served, empty and late
ticks: a tick is starved when no action is applied in its 1/hz slot):

* (a) async, two processes as on a device, where the actuator is its own Greengrass
  component: the mode process runs ``vla_edge.policies.load_policy`` and the real
  ``InferenceComponent`` with ``run(stop)`` on its thread, on an ``InMemoryBroker`` bus
  (FrameReady per camera frame, a JointState per tick); a control process it spawns runs
  the clock and the actuator's ``ActionSchedule``. Every ActionChunk the component
  publishes goes, as the JSON payload of ``messages.encode``, through a pipe to the
  control process, where a receiver thread decodes it and merges it into the schedule
  (``submit(chunk, time.time())``, as the actuator does); each tick applies
  ``pop_due(now, 1/hz)``, or is empty, and sends a JointState back, which the mode
  process publishes on its bus. Were the clock in the inference process, the inference
  thread (and the GIL) would delay its wake-ups by tens of ms, which a device does not
  see. Inference latency: time around ``LoadedPolicy.predict_chunk``, which the component
  calls. The component's start-up warm-up (``warmupInferences``) counts in its time to
  first action. Peak RSS and CPU are given for each of the two processes.
* both: ``set_torch_threads(--threads)`` in the mode process (the component applies
  ``torchThreads`` only to a policy it loads itself; here it is given one).
* (b) sync: LeRobot's loop (``lerobot.utils.control_utils.predict_action``): each tick
  the newest frame and the state go through ``prepare_observation_for_inference`` and the
  preprocessor, then ``policy.select_action`` (which runs a whole inference when its
  action queue is empty, blocking the loop) and the postprocessor. Ticks whose slots pass
  meanwhile are missed, not made up for. Inference latency: the ``select_action`` calls
  that ran ``predict_action_chunk``. One process, as LeRobot runs it: control and inference
  share one loop.

Counts cover ``--seconds`` of ticks from the first applied action; start-up is reported
as time to first action, and the start-up inference is left out of the latency figures.
When (a) starves, the lines below the table say why: how much plan was left when each
new chunk arrived (the inference side: refillFraction x chunk length against latency),
and how late control ticks woke against when the next action was due (the actuator side:
a tick that wakes after the next action's time takes that action, and the tick after it
finds none).

    python benchmarks/inference_scheduling.py [--seconds 60] [--hz 30] [--threads 1]
                                              [--height 480] [--width 640] [--json]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is fetched: the backbone starts from random weights

# beside this file, on sys.path when run as a script
from _scheduling_modes import CAMERA, JOINTS, SPAWN, run_mode

MODES = (("async", "(a) async component"), ("sync", "(b) sync select_action"))
STATE_STD, ACTION_STD = 30.0, 20.0

log = logging.getLogger("inference_scheduling")


def build_policy(directory: Path, height: int, width: int) -> dict[str, Any]:
    """Save a randomly initialised default-size ACT policy and its processors into ``directory``."""
    import torch
    from lerobot.configs.types import FeatureType, PolicyFeature
    from lerobot.policies.act.configuration_act import ACTConfig
    from lerobot.policies.factory import get_policy_class, make_pre_post_processors

    image_key = f"observation.images.{CAMERA}"
    config = ACTConfig(
        device="cpu",
        input_features={image_key: PolicyFeature(type=FeatureType.VISUAL, shape=(3, height, width)),
                        "observation.state": PolicyFeature(type=FeatureType.STATE, shape=(len(JOINTS),))},
        output_features={"action": PolicyFeature(type=FeatureType.ACTION, shape=(len(JOINTS),))},
        pretrained_backbone_weights=None,
        push_to_hub=False,
    )
    stats = {"observation.state": {"mean": torch.zeros(len(JOINTS)), "std": torch.full((len(JOINTS),), STATE_STD)},
             "action": {"mean": torch.zeros(len(JOINTS)), "std": torch.full((len(JOINTS),), ACTION_STD)},
             image_key: {"mean": torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1),  # ImageNet, per channel
                         "std": torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)}}
    torch.manual_seed(0)
    policy = get_policy_class(config.type)(config)
    preprocessor, postprocessor = make_pre_post_processors(config, dataset_stats=stats)
    policy.save_pretrained(directory)
    preprocessor.save_pretrained(directory)
    postprocessor.save_pretrained(directory)
    observation = {image_key: torch.rand(3, height, width), "observation.state": torch.zeros(len(JOINTS)), "task": ""}
    durations = []
    policy.eval()
    for _ in range(4):
        started = time.perf_counter()
        with torch.inference_mode():
            postprocessor(policy.predict_action_chunk(preprocessor(observation)))
        durations.append(time.perf_counter() - started)
    return {"parameters": sum(p.numel() for p in policy.parameters()), "one_inference_ms":
            statistics.median(durations[1:]) * 1e3, "first_inference_ms": durations[0] * 1e3,
            "backbone": config.vision_backbone, "dim_model": config.dim_model, "n_heads": config.n_heads,
            "dim_feedforward": config.dim_feedforward, "n_encoder_layers": config.n_encoder_layers,
            "n_decoder_layers": config.n_decoder_layers, "use_vae": config.use_vae,
            "chunk_size": config.chunk_size, "n_action_steps": config.n_action_steps,
            "weights_mb": (directory / "model.safetensors").stat().st_size / 2**20}


def run_in_process(mode: str, policy_dir: Path, args: dict[str, Any]) -> dict[str, Any]:
    results = SPAWN.Queue()
    process = SPAWN.Process(target=run_mode, args=(mode, str(policy_dir), args, results), name=f"mode-{mode}")
    process.start()
    try:
        figures = results.get(timeout=300 + args["seconds"] * 2)
    except Exception as exc:  # queue.Empty: the process died or hung
        raise RuntimeError(f"mode {mode!r} gave no result (exit code {process.exitcode})") from exc
    finally:
        process.join(60)
        if process.is_alive():
            process.kill()
    return summarise(figures, args)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summarise(figures: dict[str, Any], args: dict[str, Any]) -> dict[str, Any]:
    inference_ms = [s * 1e3 for s in figures.pop("inference_s")]
    model_ms = [s * 1e3 for s in figures.pop("model_s")]
    figures["model_ms"] = {"p50": percentile(model_ms, 0.5), "p99": percentile(model_ms, 0.99)}
    figures.pop("t0")
    figures.pop("window")
    lateness_ms = [s * 1e3 for s in figures.pop("lateness_s").values()]
    figures["tick_wake_late_ms"] = {"p50": percentile(lateness_ms, 0.5), "p99": percentile(lateness_ms, 0.99),
                                    "max": max(lateness_ms, default=float("nan"))}
    figures["starved_pct"] = 100.0 * figures["starved"] / max(figures["ticks"], 1)
    figures["inference_ms"] = {"p50": percentile(inference_ms, 0.5), "p99": percentile(inference_ms, 0.99),
                               "max": max(inference_ms, default=float("nan")), "count": len(inference_ms)}
    return figures


def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def render(results: dict[str, Any]) -> str:
    config, policy = results["config"], results["policy"]
    lines = [
        (f"ACT policy, random weights: {policy['parameters']:,} parameters ({policy['weights_mb']:.0f} MB), "
         f"{policy['backbone']} backbone, dim_model {policy['dim_model']}, {policy['n_heads']} heads, "
         f"feedforward {policy['dim_feedforward']}, {policy['n_encoder_layers']} encoder / "
         f"{policy['n_decoder_layers']} decoder layers, VAE {policy['use_vae']}, chunk_size {policy['chunk_size']}, "
         f"n_action_steps {policy['n_action_steps']}"),
        (f"inputs observation.images.{CAMERA} 3x{config['height']}x{config['width']} + observation.state "
         f"{len(JOINTS)} -> action {len(JOINTS)}; one inference (pre + predict_action_chunk + post): "
         f"{policy['one_inference_ms']:.0f} ms (median of 3; first call {policy['first_inference_ms']:.0f} ms)"),
        (f"control clock {config['hz']:g} Hz, {config['seconds']:g} s measured per mode from the first action; "
         f"torch threads {config['threads']} in both modes; camera: synthetic {config['width']}x{config['height']} "
         f"at {config['hz']:g} fps into a shared-memory ring, own process; Python {results['python']}, "
         f"{os.cpu_count()} CPUs"),
        "",
    ]
    header = (f"{'mode':<24} {'ticks':>6} {'starved':>8} {'starved%':>9} {'empty':>6} {'late':>5} {'gap max ms':>11} "
              f"{'actions':>8} {'infer p50':>10} {'infer p99':>10} {'n':>4} {'RSS MB':>9} {'1st act s':>10} "
              f"{'CPU %':>8}")
    lines += [header, "-" * len(header)]
    for key, name in MODES:
        r = results[key]
        rss, cpu = f"{r['peak_rss_mb']:.0f}", f"{r['cpu_pct']:.0f}"
        if "control_peak_rss_mb" in r:  # (a): inference process + control process
            rss += f"+{r['control_peak_rss_mb']:.0f}"
            cpu += f"+{r['control_cpu_pct']:.0f}"
        lines.append(f"{name:<24} {r['ticks']:>6} {r['starved']:>8} {r['starved_pct']:>8.2f}% {r['empty']:>6} "
                     f"{r['late']:>5} {r['longest_gap_ms']:>11.1f} {r['actions']:>8} "
                     f"{r['inference_ms']['p50']:>10.1f} {r['inference_ms']['p99']:>10.1f} "
                     f"{r['inference_ms']['count']:>4} {rss:>9} {r['first_action_s']:>10.2f} {cpu:>8}")
    a, b = results["async"], results["sync"]
    lines += [
        "",
        (f"longest gap sync/async: x{results['ratio']['longest_gap']:.1f}; starved ticks sync {b['starved']} vs "
         f"async {a['starved']}; inference p50 sync/async x{results['ratio']['inference_p50']:.2f}; "
         f"peak RSS sync/async x{results['ratio']['peak_rss']:.2f} (async inference process alone; "
         f"x{results['ratio']['peak_rss_with_control']:.2f} against the sum of both async processes)"),
        (f"(a) RSS and CPU are inference process + control process: inference (InferenceComponent thread, frame "
         f"relay, in-memory bus) peak RSS {a['peak_rss_mb']:.0f} MB, CPU {a['cpu_pct']:.0f}%; control (clock, "
         f"ActionSchedule, JointState) peak RSS {a['control_peak_rss_mb']:.0f} MB, CPU {a['control_cpu_pct']:.0f}%; "
         f"(b) is one process. Peak RSS = VmHWM; ru_maxrss, which includes the spawning parent's size: "
         f"async inference {a['ru_maxrss_mb']:.0f}, control {a['control_ru_maxrss_mb']:.0f}, "
         f"sync {b['ru_maxrss_mb']:.0f} MB"),
        (f"model alone (predict_action_chunk) p50/p99: async {a['model_ms']['p50']:.1f}/{a['model_ms']['p99']:.1f} "
         f"ms, sync {b['model_ms']['p50']:.1f}/{b['model_ms']['p99']:.1f} ms (infer columns: async = "
         "LoadedPolicy.predict_chunk incl. pre/post-processing, sync = the select_action calls that inferred)"),
        (f"(a) {a['chunks']} chunks of {a['chunk_len']} actions, refillFraction {a['refill_fraction']:g}: least plan "
         f"left when a new chunk arrived {a['min_plan_left_s']:.2f} s (component's queue_depth_min_s "
         f"{_num(a['component_queue_depth_min_s'], 2)}); component's own latency p50/p99 "
         f"{_num(a['component_latency_ms'][0])}/{_num(a['component_latency_ms'][1])} ms (incl. the first real "
         f"inference); inference errors {a['inference_errors']}; chunks not queued by the control process "
         f"{sum(a['chunks_dropped'].values())}{' ' + str(a['chunks_dropped']) if a['chunks_dropped'] else ''}"),
        (f"(a) empty ticks {a['empty']}, {a['empty_with_plan']} of them with later actions queued; ticks are "
         f"nominally {a['tick_to_next_action_ms']:.1f} ms before the next action time, and "
         f"{a['ticks_woken_past_next_action']} woke later than that (each still executes its own slot's action); due actions superseded {a['superseded']}; dropped as over a tick old {a['stale']} (these include "
         "each new chunk's first actions, whose time passed while it was computed)"),
        ("control tick wake-up lateness p50/p99/max: " + ", ".join(
            f"{k} {r['tick_wake_late_ms']['p50']:.1f}/{r['tick_wake_late_ms']['p99']:.1f}/"
            f"{r['tick_wake_late_ms']['max']:.1f} ms" for k, r in (("async (control process)", a), ("sync", b)))),
        (f"load average (1 min) before/after: async {a['loadavg_1min'][0]:.2f}/{a['loadavg_1min'][1]:.2f}, "
         f"sync {b['loadavg_1min'][0]:.2f}/{b['loadavg_1min'][1]:.2f}; CPU per process (camera process not "
         "counted), 100% = one core"),
        f"target: no starved tick for (a): {'met' if results['target_met'] else 'NOT MET'}",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="measured seconds per mode (default 60)")
    parser.add_argument("--hz", type=float, default=30.0, help="control and camera rate (default 30)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads in both modes (default 1, the "
                        "component's torchThreads default)")
    parser.add_argument("--height", type=int, default=480, help="camera and policy image height (default 480)")
    parser.add_argument("--width", type=int, default=640, help="camera and policy image width (default 640)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.hz <= 0 or args.threads < 1:
        parser.error("--seconds and --hz must be positive and --threads at least 1")
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import torch

    torch.set_num_threads(args.threads)
    config = {"seconds": args.seconds, "hz": args.hz, "threads": args.threads, "height": args.height,
              "width": args.width}
    results: dict[str, Any] = {"config": config, "python": sys.version.split()[0]}
    workdir = Path(tempfile.mkdtemp(prefix="vla-bench-act-"))
    try:
        policy_dir = workdir / "act_so101_random"
        results["policy"] = build_policy(policy_dir, args.height, args.width)
        for key, _name in MODES:
            log.info("running mode %s", key)
            results[key] = run_in_process(key, policy_dir, config)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    a, b = results["async"], results["sync"]
    results["ratio"] = {"longest_gap": b["longest_gap_ms"] / a["longest_gap_ms"],
                        "inference_p50": b["inference_ms"]["p50"] / a["inference_ms"]["p50"],
                        "peak_rss": b["peak_rss_mb"] / a["peak_rss_mb"],
                        "peak_rss_with_control": b["peak_rss_mb"] / (a["peak_rss_mb"] + a["control_peak_rss_mb"])}
    results["target_met"] = a["starved"] == 0
    print(json.dumps(results, indent=2) if args.json else render(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
