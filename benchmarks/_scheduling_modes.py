"""The two modes of ``benchmarks/inference_scheduling.py``, each run in its own (spawned) process.

Shared by both modes: a camera process writing synthetic frames into a shared-memory
ring at the camera rate, and :func:`drive`, the 30 Hz control clock. Tick ``k`` owns the
slot ``[t0 + k/hz, t0 + (k+1)/hz)``; it is *served* when an action is applied inside its
slot. It is *empty* when it ran but had no action, and *late* when its slot ended before
an action was applied for it: either the loop was still busy when the slot passed (the
clock skips such ticks, it never makes them up), or the tick's own work (a blocking
inference) applied its action after the slot ended. Starved = empty + late.
Measured ticks start at the slot holding the first applied action (start-up is reported
as time to first action) and run for ``hz * seconds`` ticks.

Mode (a) is split in two processes, as on a device, where the inference component and
the actuator are separate Greengrass components: the mode process holds the inference
side (the ``InferenceComponent`` on its thread, the frame relay, an ``InMemoryBroker``),
and :func:`run_control`, spawned from it, holds the actuator's side (the :func:`drive`
clock, the ``ActionSchedule``, publishing JointState). Sharing one process would let the
inference thread hold the GIL when a control tick is due (wake-ups delayed by up to
~60 ms), which no device sees. The two exchange the JSON payload dicts of
``vla_edge.messages.encode`` over ``multiprocessing`` pipes, as IPC would carry them:
ActionChunks inference -> control (decoded and merged into the schedule by a receiver
thread, like the actuator's IPC callback), JointStates control -> inference (published on
the in-memory bus by a receiver thread, as the IPC subscription would deliver them). Mode
(b) stays one process: LeRobot's design runs control and inference in one loop.

Peak RSS is each process's own high-water mark (``VmHWM``). ``ru_maxrss`` is reported
beside it but over-reads for a spawned process: Linux carries the spawning parent's
high-water mark into the child's ``ru_maxrss`` at exec, so it is at least the size of the
process that spawned it.
"""

from __future__ import annotations

import itertools
import logging
import multiprocessing
import resource
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from vla_edge.components.actuator.component import next_tick_time
from vla_edge.components.actuator.config import ActuatorConfig

CAMERA = "front"
JOINTS = ["shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper"]
STARTUP_LIMIT_S = 120.0
SPAWN = multiprocessing.get_context("spawn")

log = logging.getLogger("inference_scheduling")


def camera_source(directory: str, height: int, width: int, fps: float, conn: Any, notify: bool, stop: Any) -> None:
    """Synthetic frames into ``<directory>/front.ring`` at ``fps``; (seq, slot, t_capture) to ``conn`` if notify."""
    from vla_edge.cameras.base import CameraConfig
    from vla_edge.cameras.ring import FrameRing
    from vla_edge.cameras.synthetic import SyntheticCamera

    camera = SyntheticCamera(CameraConfig(width=width, height=height))
    images = [camera.render(i, i / fps) for i in range(8)]  # pre-rendered: rendering is not what is measured
    ring = FrameRing.create(directory, CAMERA, height, width, 3)
    conn.send(str(ring.path))
    period, due, seq = 1.0 / fps, time.monotonic(), 0
    while not stop.is_set():
        info = ring.write(images[seq % len(images)], time.time())
        seq += 1
        if notify:
            conn.send((info.seq, info.slot, time.time()))
        due = max(due + period, time.monotonic())  # a late frame is not made up for with a burst
        stop.wait(max(0.0, due - time.monotonic()))
    ring.close()


def received(connection: Any, stop: threading.Event) -> Iterator[Any]:
    """What arrives on one end of a Pipe until ``stop`` is set or the other process goes away."""
    while not stop.is_set():
        try:
            if not connection.poll(0.1):
                continue
            yield connection.recv()
        except (EOFError, OSError):  # the other process has gone
            return


def drive(hz: float, seconds: float, work: Callable[[int, float], float | None]) -> dict[str, Any]:
    """Run ``work(tick, slot)`` on the actuator's control clock (``slot``: the wall-clock time the tick
    was planned for, whose action it executes, as the actuator does); ``work`` returns the monotonic
    time it applied an action, or None."""
    period = 1.0 / hz
    outcome: dict[int, str] = {}
    applied: list[float] = []
    lateness: dict[int, float] = {}  # tick -> how long after its slot started its work began
    first_tick: int | None = None
    end_tick: int | None = None
    # Slots start where the actuator's ticks do: on the wall-clock grid of the period, tickPhaseS after
    # each point (the grid the inference component puts actions on).
    phase = ActuatorConfig().tick_phase_s
    wall, mono = time.time(), time.monotonic()
    slot0 = next_tick_time(wall, period, phase)
    t0 = mono + (slot0 - wall)
    k = 0
    while end_tick is None or k < end_tick:
        slot_start = t0 + k * period
        now = time.monotonic()
        if now < slot_start:
            time.sleep(slot_start - now)
        elif now >= slot_start + period:  # the slot passed while the loop was busy: missed, not made up for
            current = int((now - t0) / period)
            outcome.update((i, "late") for i in range(k, current))
            k = current
            continue
        lateness[k] = time.monotonic() - slot_start
        acted = work(k, slot0 + k * period)
        if acted is None:
            outcome[k] = "empty"
        else:
            applied.append(acted)
            outcome[k] = "served" if acted < slot_start + period else "late"
            if first_tick is None:
                first_tick = int((acted - t0) / period)
                end_tick = first_tick + round(hz * seconds)
        if first_tick is None and time.monotonic() - t0 > STARTUP_LIMIT_S:
            raise RuntimeError(f"no action within {STARTUP_LIMIT_S:.0f} s of start")
        k += 1
    assert first_tick is not None and end_tick is not None
    start, stop = t0 + first_tick * period, t0 + end_tick * period
    ticks = [outcome.get(i, "late") for i in range(first_tick, end_tick)]
    times = [t for t in applied if start <= t < stop]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    return {"ticks": len(ticks), "empty": ticks.count("empty"), "late": ticks.count("late"),
            "starved": ticks.count("empty") + ticks.count("late"), "actions": len(times),
            "longest_gap_ms": max(gaps) * 1e3 if gaps else float("nan"),
            "first_action_s": applied[0] - t0, "t0": t0, "window": (start, stop),
            "lateness_s": {k: v for k, v in lateness.items() if first_tick <= k < end_tick}}


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _ru_maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # kB on Linux


def _peak_rss_mb() -> float:
    """This process's own peak resident set (``VmHWM``), MB; ``ru_maxrss`` where there is no /proc."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return _ru_maxrss_mb()


def run_mode(mode: str, policy_dir: str, args: dict[str, Any], results: Any) -> None:
    """Entry point of a mode process: camera, policy, control loop (for (a), in a process of its own); puts
    the figures on ``results``."""
    import contextlib
    import os
    import sys

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from vla_edge.policies import set_torch_threads

    set_torch_threads(args["threads"])
    base = "/dev/shm" if os.path.isdir("/dev/shm") else None
    ring_dir = tempfile.mkdtemp(prefix="vla-bench-sched-", dir=base)
    ours, theirs = SPAWN.Pipe(duplex=False)
    stop_camera = SPAWN.Event()
    camera = SPAWN.Process(target=camera_source, daemon=True, args=(
        ring_dir, args["height"], args["width"], args["hz"], theirs, mode == "async", stop_camera))
    camera.start()
    try:
        if not ours.poll(60):
            raise RuntimeError("the camera process did not create its ring")
        ring_path = ours.recv()
        load_before = os.getloadavg()[0]
        with contextlib.redirect_stdout(sys.stderr):  # LeRobot's from_pretrained prints; stdout is the report's
            figures = (run_async if mode == "async" else run_sync)(policy_dir, args, ring_path, ours)
        figures["loadavg_1min"] = [load_before, os.getloadavg()[0]]
        figures["peak_rss_mb"] = _peak_rss_mb()  # (a): the inference process; its control process's are beside
        figures["ru_maxrss_mb"] = _ru_maxrss_mb()
        results.put(figures)
    finally:
        stop_camera.set()
        camera.join(10)
        if camera.is_alive():
            camera.kill()
        Path(ring_dir, f"{CAMERA}.ring").unlink(missing_ok=True)
        Path(ring_dir).rmdir()


def _time_model(policy: Any) -> list[tuple[float, float]]:
    """Record (start, end) of every ``predict_action_chunk`` of this LeRobot policy instance (model only)."""
    spans: list[tuple[float, float]] = []
    predict = policy.predict_action_chunk

    def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.monotonic()
        try:
            return predict(*args, **kwargs)
        finally:
            spans.append((started, time.monotonic()))

    policy.predict_action_chunk = timed
    return spans


def _inferences(spans: list[tuple[float, float]], window: tuple[float, float]) -> list[float]:
    """Durations (s) of the inferences that started inside the measured window."""
    return [end - start for start, end in spans if window[0] <= start < window[1]]


def run_async(policy_dir: str, args: dict[str, Any], ring_path: str, frames: Any) -> dict[str, Any]:
    """(a) the real InferenceComponent on its thread; its chunks go to the control process (:func:`run_control`)."""
    # The actuator's side, spawned before the policy is loaded (it needs none of it). Pipes, one way each:
    # chunks inference -> control, joint states control -> inference; `link` for ready / go / figures.
    link, control_link = SPAWN.Pipe()
    chunks_in, chunks_out = SPAWN.Pipe(duplex=False)
    states_in, states_out = SPAWN.Pipe(duplex=False)
    control = SPAWN.Process(target=run_control, args=(args, control_link, chunks_in, states_out), name="control",
                            daemon=True)
    control.start()
    control_link.close()
    chunks_in.close()
    states_out.close()
    try:
        if not link.poll(60) or link.recv() != "ready":
            raise RuntimeError(f"the control process did not start (exit code {control.exitcode})")
        return _run_inference_side(policy_dir, args, ring_path, frames, control, link, chunks_out, states_in)
    finally:
        for conn in (link, chunks_out, states_in):
            conn.close()
        control.join(10)
        if control.is_alive():
            control.kill()


def _run_inference_side(policy_dir: str, args: dict[str, Any], ring_path: str, frames: Any, control: Any,
                        link: Any, chunks_out: Any, states_in: Any) -> dict[str, Any]:
    from vla_edge import messages
    from vla_edge.bus.memory import InMemoryBroker
    from vla_edge.components.base import load_config
    from vla_edge.components.inference.component import InferenceComponent
    from vla_edge.components.inference.config import InferenceConfig
    from vla_edge.policies import load_policy

    policy = load_policy(policy_dir, "cpu")
    spans: list[tuple[float, float]] = []
    predict = policy.predict_chunk

    def timed_predict(*args: Any, **kwargs: Any) -> Any:  # what the component calls for each chunk
        started = time.monotonic()
        try:
            return predict(*args, **kwargs)
        finally:
            spans.append((started, time.monotonic()))

    policy.predict_chunk = timed_predict  # type: ignore[method-assign]
    model_spans = _time_model(policy.policy)
    period = 1.0 / args["hz"]
    config = load_config(InferenceConfig, {"frameDir": str(Path(ring_path).parent), "cameras": [CAMERA],
                                           "jointNames": JOINTS, "torchThreads": args["threads"],
                                           "actionDt": period})
    broker = InMemoryBroker()
    component = InferenceComponent(broker.bus(), config, policy=policy)
    bench = broker.bus()
    stop = threading.Event()
    sent = 0

    def on_chunk(topic: str, payload: Any) -> None:  # to the actuator, as IPC would carry it: the JSON dict
        nonlocal sent
        if not stop.is_set():
            chunks_out.send((topic, payload))
            sent += 1

    bench.subscribe(messages.TOPIC_ACTION_CHUNK, on_chunk)

    def relay() -> None:  # the camera's FrameReady announcements onto the bus, as the camera component does
        while not stop.is_set():
            if frames.poll(0.1):
                seq, slot, t_capture = frames.recv()
                bench.publish(*messages.encode(messages.FrameReady(
                    camera=CAMERA, seq=seq, t_capture=t_capture, height=args["height"], width=args["width"],
                    slot=slot, segment=ring_path)))

    def joint_states() -> None:  # the actuator's JointState onto the bus, as the IPC subscription delivers it
        for topic, payload in received(states_in, stop):
            bench.publish(topic, payload)
            broker.published.clear()  # the broker keeps every message for tests; not wanted for an hour of ticks

    threads = [threading.Thread(target=relay, name="relay", daemon=True),
               threading.Thread(target=joint_states, name="joint-states", daemon=True),
               threading.Thread(target=component.run, args=(stop,), name="inference", daemon=True)]
    for thread in threads:
        thread.start()
    cpu, wall = _cpu_s(), time.monotonic()
    link.send({"action_dt": config.action_dt})  # go: the control clock starts now, as drive() did here before
    try:
        deadline = time.monotonic() + STARTUP_LIMIT_S + args["seconds"] + 60
        while not link.poll(1.0):
            if not control.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the control process gave no figures (exit code {control.exitcode})")
        control_figures = link.recv()
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    cpu_pct = 100 * (_cpu_s() - cpu) / (time.monotonic() - wall)
    component.close()
    if "error" in control_figures:
        raise RuntimeError(f"control process: {control_figures['error']}")
    metrics = component.metrics()
    window = control_figures["window"]
    return {**control_figures, "inference_s": _inferences(spans, window), "cpu_pct": cpu_pct,
            "model_s": _inferences(model_spans, window), "chunks_sent": sent,
            "chunk_len": policy.n_action_steps, "refill_fraction": config.refill_fraction,
            "component_latency_ms": [metrics.get("inference_latency_p50_ms"), metrics.get("inference_latency_p99_ms")],
            "component_queue_depth_min_s": metrics.get("queue_depth_min_s"),
            "inference_errors": component.counters.get("inference_errors")}


def run_control(args: dict[str, Any], link: Any, chunks_in: Any, states_out: Any) -> None:
    """(a)'s control process, the actuator's side: the control clock over an ActionSchedule fed with chunks.

    Sends "ready" on ``link``, waits for go (``{"action_dt": ...}``), runs :func:`drive`, and sends its
    figures back on ``link`` (``{"error": ...}`` when it failed).
    """
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from vla_edge import messages
    from vla_edge.components.actuator.safety import UnsafeAction
    from vla_edge.components.actuator.schedule import ActionSchedule
    from vla_edge.errors import MessageError

    period = 1.0 / args["hz"]
    schedule = ActionSchedule(JOINTS)
    chunks: list[tuple[float, float]] = []  # (wall time it arrived, wall time its last action is for)
    dropped: dict[str, int] = {}  # chunks not queued, by reason (stale, far_future, or a decoding error)
    stop = threading.Event()

    def receive() -> None:  # the actuator's IPC callback: decode, then merge into the schedule
        for topic, payload in received(chunks_in, stop):
            try:
                chunk = messages.decode(topic, payload, messages.ActionChunk)
                assert isinstance(chunk, messages.ActionChunk)
                arrived = time.time()
                outcome = schedule.submit(chunk, arrived).outcome  # what schedule.add(chunk, now) does
            except (MessageError, UnsafeAction) as exc:
                log.warning("control process: chunk refused: %s", exc)
                dropped[type(exc).__name__] = dropped.get(type(exc).__name__, 0) + 1
                continue
            chunks.append((arrived, chunk.t_start + (len(chunk.actions) - 1) * chunk.dt))
            if outcome != "queued":
                dropped[outcome] = dropped.get(outcome, 0) + 1

    positions = [0.0] * len(JOINTS)
    empty_with_plan: set[int] = set()  # empty ticks while later actions were queued
    superseded: dict[int, int] = {}  # tick -> due actions it passed over for a newer due one
    stale: dict[int, int] = {}  # tick -> actions dropped as more than one tick old

    def tick(k: int, slot: float) -> float | None:
        nonlocal positions
        due = schedule.pop_due(min(slot, time.time()), period)
        stale[k] = due.stale
        acted = None
        if due.action is not None:
            positions, acted = list(due.action.values), time.monotonic()
            superseded[k] = due.skipped
        elif len(schedule):
            empty_with_plan.add(k)
        states_out.send(messages.encode(messages.JointState(t=time.time(), names=JOINTS, positions=positions)))
        return acted

    link.send("ready")
    try:
        go = link.recv()
    except EOFError:  # the inference side failed before starting the clock
        return
    receiver = threading.Thread(target=receive, name="chunks", daemon=True)
    receiver.start()
    cpu, wall = _cpu_s(), time.monotonic()
    try:
        clock = drive(args["hz"], args["seconds"], tick)
    except Exception as exc:  # noqa: BLE001 - reported by the inference side
        link.send({"error": f"{type(exc).__name__}: {exc}"})
        return
    finally:
        stop.set()
    cpu_pct = 100 * (_cpu_s() - cpu) / (time.monotonic() - wall)
    receiver.join(5)
    start_wall = time.time() - (time.monotonic() - clock["window"][0])
    margins = [prev_end - arrived for (_, prev_end), (arrived, _) in itertools.pairwise(chunks)
               if arrived >= start_wall]
    # Actions are due at wall-clock multiples of actionDt (the component rounds tStart up); ticks run
    # tickPhaseS after them and ask for their planned slot's action, so a tick woken later than `lead`
    # still executes its own action (these wake-ups are counted below, for comparison with earlier runs).
    lead = (-start_wall) % period if abs(period - go["action_dt"]) < 1e-9 else float("nan")
    window = clock["lateness_s"]
    link.send({**clock, "chunks": len(chunks), "chunks_dropped": dropped,
               "min_plan_left_s": min(margins) if margins else float("nan"),
               "empty_with_plan": len(empty_with_plan & window.keys()),
               "superseded": sum(n for k, n in superseded.items() if k in window),
               "stale": sum(n for k, n in stale.items() if k in window),
               "tick_to_next_action_ms": lead * 1e3,
               "ticks_woken_past_next_action": sum(1 for late in window.values() if late > lead),
               "control_cpu_pct": cpu_pct, "control_peak_rss_mb": _peak_rss_mb(),
               "control_ru_maxrss_mb": _ru_maxrss_mb()})


def run_sync(policy_dir: str, args: dict[str, Any], ring_path: str, _frames: Any) -> dict[str, Any]:
    """(b) LeRobot's own loop (lerobot.utils.control_utils.predict_action): select_action blocks to refill."""
    import numpy as np
    import torch
    from lerobot.configs.policies import PreTrainedConfig
    from lerobot.policies.factory import get_policy_class, make_pre_post_processors
    from lerobot.policies.utils import prepare_observation_for_inference

    from vla_edge.cameras.ring import FrameRingReader

    config = PreTrainedConfig.from_pretrained(policy_dir, local_files_only=True)
    policy = get_policy_class(config.type).from_pretrained(policy_dir, config=config, local_files_only=True)
    preprocessor, postprocessor = make_pre_post_processors(config, pretrained_path=policy_dir)
    policy.reset()
    device = torch.device(config.device)
    reader = FrameRingReader.open(ring_path)
    model_spans = _time_model(policy)  # select_action calls predict_action_chunk when its queue is empty
    spans: list[tuple[float, float]] = []
    state = np.zeros(len(JOINTS), dtype=np.float32)

    def tick(_k: int, _slot: float) -> float | None:
        frame = reader.latest()
        if frame is None:  # the camera has not written its first frame yet
            return None
        observation = {f"observation.images.{CAMERA}": frame.image, "observation.state": state.copy()}
        with torch.inference_mode():
            batch = preprocessor(prepare_observation_for_inference(observation, device, ""))
            before, started = len(model_spans), time.monotonic()
            action = policy.select_action(batch)
            if len(model_spans) != before:  # this call ran an inference
                spans.append((started, time.monotonic()))
            action = postprocessor(action)
        state[:] = action.to("cpu").numpy().reshape(-1)
        return time.monotonic()

    cpu, wall = _cpu_s(), time.monotonic()
    clock = drive(args["hz"], args["seconds"], tick)
    cpu_pct = 100 * (_cpu_s() - cpu) / (time.monotonic() - wall)
    reader.close()
    return {**clock, "inference_s": _inferences(spans, clock["window"]), "cpu_pct": cpu_pct,
            "model_s": _inferences(model_spans, clock["window"]), "chunk_len": int(config.n_action_steps)}
