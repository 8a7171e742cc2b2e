"""Switch half of the model-update benchmark: a real rollout, in one process, while the arm is driven.

Wired as on a device, but on one in-memory bus (``InMemoryBroker``) in this process:

* :class:`ActuatorComponent` at 30 Hz on a real ``FeetechBus`` talking to the emulated arm over
  its pseudo-terminal, in a process of its own, bridged to the bus (:mod:`_model_update_actuator`);
* :class:`InferenceComponent` serving ACT ``bench-act`` 1, fed by camera frames in a
  shared-memory ring (:class:`FrameFeeder`) and by the actuator's joint states;
* :class:`ModelUpdaterComponent` with an empty store: it adopts version 1 as the served model,
  then a configuration change (``model: {source: local, path: v2}``, what a deployment's MERGE
  does) makes it fetch, verify and install version 2, stage it (the real validator subprocess,
  then a load beside the serving model) and activate it.

:class:`Recorder` stamps every joint state, chunk, model status, command and report with
``time.monotonic()`` as it is delivered; the actuator process stamps its own joint states and
samples its counters every 50 ms (one clock: CLOCK_MONOTONIC is system-wide). The
switch window runs from the updater's "verified" status to the inference component's ``serving``
report (its first chunk from version 2 is out); the baseline window is as long and ends when the
configuration changes; the after window is as long and starts at ``serving`` (discarding
version 1 and pruning the store fall in it when the probation is 0).

The inference component and the model-updater share this interpreter (a device runs them as two
processes); the actuator does not, because its ticks are what is measured.
"""

from __future__ import annotations

import bisect
import functools
import itertools
import logging
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _model_update_actuator import SAMPLE_S, ActuatorProcess
from _model_update_models import FrameFeeder, save_act_version

from vla_edge import messages
from vla_edge.bus.memory import InMemoryBroker, InMemoryBus
from vla_edge.components.base import load_config
from vla_edge.components.inference.component import InferenceComponent
from vla_edge.components.inference.config import InferenceConfig
from vla_edge.components.model_updater.component import ModelUpdaterComponent
from vla_edge.components.model_updater.config import ModelUpdaterConfig
from vla_edge.updater.manifest import build_manifest, write_manifest

MODEL_NAME = "bench-act"
CONTROL_HZ = 30.0


class Recorder:
    """Arrival times of what the switch is measured by; handlers run on the publisher's thread, so they only append."""

    def __init__(self, bus: InMemoryBus) -> None:
        self.states: list[tuple[float, dict[str, Any]]] = []
        self.chunks: list[tuple[float, dict[str, Any]]] = []
        self.events: list[tuple[float, messages.Message]] = []
        bus.subscribe(messages.TOPIC_JOINT_STATE, lambda _t, p: self.states.append((time.monotonic(), p)))
        bus.subscribe(messages.TOPIC_ACTION_CHUNK, lambda _t, p: self.chunks.append((time.monotonic(), p)))
        for topic in (messages.TOPIC_MODEL_STATUS, messages.TOPIC_MODEL_COMMAND, messages.TOPIC_MODEL_REPORT):
            bus.subscribe(topic, self._event)

    def _event(self, topic: str, payload: Any) -> None:
        self.events.append((time.monotonic(), messages.decode(topic, payload)))

    def first(self, match: Callable[[messages.Message], bool], after: float = 0.0) -> float | None:
        """Arrival time of the first event after ``after`` that ``match`` accepts."""
        return next((t for t, event in list(self.events) if t >= after and match(event)), None)


@dataclass(frozen=True)
class Window:
    """The actuator over ``[start, end)``: ticks it ran, ticks that wrote an action, and counter deltas."""

    name: str
    seconds: float
    expected: float
    ticks: int
    executed: int
    starved: int
    overruns: int
    stale: int
    longest_gap_ms: float
    tick_p99_ms: float | None

    @property
    def missed(self) -> float:
        return self.expected - self.executed


def _counters_at(samples: list[tuple[float, dict[str, int]]], t: float) -> dict[str, int]:
    """The last counter sample taken at or before ``t``."""
    index = bisect.bisect_right([s[0] for s in samples], t) - 1
    return samples[max(0, index)][1] if samples else {}


def window(name: str, start: float, end: float, actuator: dict[str, Any]) -> Window:
    """The actuator's figures over ``[start, end)`` from its records (``states``: (time, chunk_id) per tick)."""
    states = [(t, chunk_id) for t, chunk_id in actuator["states"] if start <= t < end]
    executed = [t for t, chunk_id in states if chunk_id]
    edges = [start, *executed, end]
    intervals = sorted(b - a for (a, _), (b, _) in itertools.pairwise(states))
    before, after = _counters_at(actuator["samples"], start), _counters_at(actuator["samples"], end)

    def delta(key: str) -> int:
        return after.get(key, 0) - before.get(key, 0)

    return Window(
        name=name, seconds=end - start, expected=(end - start) * CONTROL_HZ, ticks=len(states),
        executed=len(executed), starved=delta("starved_ticks"), overruns=delta("tick_overruns"),
        stale=delta("actions_dropped.stale"),
        longest_gap_ms=max(b - a for a, b in itertools.pairwise(edges)) * 1000.0,
        tick_p99_ms=intervals[min(len(intervals) - 1, int(0.99 * len(intervals)))] * 1000.0 if intervals else None,
    )


@dataclass
class SwitchResult:
    """Figures of one switch (seconds unless named ``_ms``) and the three windows."""

    model_mb: float
    steps: dict[str, float | None]
    component_figures: dict[str, float | None]
    windows: list[Window]
    final_counters: dict[str, int]
    """The actuator's counters when it stopped."""


def _wait(condition: Callable[[], bool], timeout: float, what: str, recorder: Recorder, arm: ActuatorProcess) -> None:
    """Poll ``condition``; fail early when the rollout failed or the actuator process died, with the last events."""
    deadline = time.monotonic() + timeout
    while not condition():
        if arm.child.poll() is not None:
            raise RuntimeError(f"the actuator process exited with {arm.child.returncode} while waiting for {what}")
        if time.monotonic() > deadline:
            tail = "; ".join(f"{type(e).__name__} {getattr(e, 'state', getattr(e, 'action', ''))} "
                             f"{getattr(e, 'detail', '')[:200]}" for _, e in recorder.events[-8:])
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}; last model events: {tail}")
        failed = [e for _, e in recorder.events if isinstance(e, messages.ModelStatus) and e.state == "failed"]
        if failed:
            raise RuntimeError(f"the rollout failed: {failed[-1].detail}")
        time.sleep(0.02)


def _is(kind: type[messages.Message], version: str | None = None, **fields: Any) -> Callable[[Any], bool]:
    """A matcher for events of ``kind`` whose ``model`` has ``version`` and whose fields equal ``fields``."""

    def match(event: Any) -> bool:
        if not isinstance(event, kind) or any(getattr(event, k, None) != v for k, v in fields.items()):
            return False
        model = getattr(event, "model", None)
        return version is None or (model is not None and model.version == version)

    return match


def run_switch(baseline_s: float, probation_s: float, timeout_s: float, packet_timeout_ms: float, arm: str,
               workdir: Path | None = None) -> SwitchResult:
    """Build both versions, run the pipeline, deploy version 2 after ``baseline_s`` of steady control."""
    with tempfile.TemporaryDirectory(prefix="vla-edge-bench-", dir=workdir) as tmp:
        root = Path(tmp)
        v1 = save_act_version(root / "models" / "v1", MODEL_NAME, "1", seed=1)
        v2 = save_act_version(root / "models" / "v2", MODEL_NAME, "2", seed=2)
        manifest = build_manifest(v2)
        write_manifest(manifest, v2)
        arm_process = functools.partial(ActuatorProcess, hz=CONTROL_HZ, packet_timeout_ms=packet_timeout_ms, arm=arm)
        return _run(root, v1, v2, manifest.total_bytes / 1e6, baseline_s, probation_s, timeout_s, arm_process)


def _run(root: Path, v1: Path, v2: Path, model_mb: float, baseline_s: float, probation_s: float, timeout_s: float,
         arm_process: Callable[[InMemoryBus], ActuatorProcess]) -> SwitchResult:
    broker = InMemoryBroker()
    recorder = Recorder(broker.bus(name="bench"))
    updater_settings = {"storeDir": str(root / "store"), "probationS": probation_s, "iotTopic": ""}
    updater_bus = broker.bus(updater_settings, name="model_updater")
    updater = ModelUpdaterComponent(updater_bus, load_config(ModelUpdaterConfig, updater_settings))
    inference = InferenceComponent(broker.bus(name="inference"), load_config(InferenceConfig, {
        "policyPath": str(v1), "frameDir": str(root / "frames"), "cameras": ["front"], "torchThreads": 1}))
    components = {"model_updater": updater, "inference": inference}
    stops = {name: threading.Event() for name in components}
    threads = {name: threading.Thread(target=c.run, args=(stops[name],), name=name, daemon=True)
               for name, c in components.items()}
    arm = arm_process(broker.bus(name="actuator-bridge"))
    feeder = FrameFeeder(broker.bus(name="camera"), root / "frames")
    records: dict[str, Any] | None = None
    try:
        threads["model_updater"].start()
        feeder.start()
        _wait(lambda: any(_is(messages.ModelStatus, state="none")(e) for _, e in recorder.events), 30,
              "the model-updater to start", recorder, arm)
        threads["inference"].start()
        _wait(lambda: any(p.get("chunk_id") for _, p in recorder.states[-5:]), timeout_s,
              "the arm to execute actions of version 1", recorder, arm)
        _wait(lambda: recorder.first(_is(messages.ModelStatus, "1", state="active")) is not None, 30,
              "the model-updater to adopt version 1", recorder, arm)
        ready = time.monotonic()
        time.sleep(baseline_s)
        deployed = time.monotonic()
        updater_bus.update_configuration((), {"model": {"source": "local", "path": str(v2)}})
        serving_report = _is(messages.ModelReport, "2", state="serving")
        _wait(lambda: recorder.first(serving_report, deployed) is not None, timeout_s,
              "version 2 to serve", recorder, arm)
        _wait(lambda: recorder.first(_is(messages.ModelStatus, "2", state="active"), deployed) is not None, 30,
              "the model-updater to record version 2 active", recorder, arm)
        serving = recorder.first(serving_report, deployed)
        verified = recorder.first(lambda e: isinstance(e, messages.ModelStatus) and "verified" in e.detail, deployed)
        assert serving is not None and verified is not None
        length = serving - verified
        time.sleep(max(0.0, serving + length - time.monotonic()) + 2 * SAMPLE_S)
        figures = {**{f"inference.{k}": v for k, v in inference.models.metrics().items()},
                   **{f"model_updater.{k}": v for k, v in updater.orchestrator.metrics().items()}}
    finally:
        for name in ("inference", "model_updater"):
            stops[name].set()
            if threads[name].is_alive():
                threads[name].join(timeout=30)
        feeder.stop()
        records = arm.stop()
        for component in components.values():
            component.close()
    if records is None:
        raise RuntimeError(f"the actuator process ended without its records (exit {arm.child.returncode})")
    at = _landmarks(recorder, records, deployed)
    windows = [window("baseline", max(ready, deployed - length), deployed, records),
               window("switch", verified, serving, records)]
    if at["validating"] is not None and at["loading"] is not None and at["staged"] is not None:
        windows += [window("validate", at["validating"], at["loading"], records),
                    window("load", at["loading"], at["staged"], records)]
    windows.append(window("after", serving, serving + length, records))
    return SwitchResult(model_mb, _steps(at, deployed, verified, serving), figures, windows, records["counters"])


def _landmarks(recorder: Recorder, records: dict[str, Any], deployed: float) -> dict[str, float | None]:
    """When each step of the rollout of version 2 showed on the bus (None: it never did)."""
    def at(match: Callable[[Any], bool]) -> float | None:
        return recorder.first(match, deployed)

    v2_chunks = {p["chunk_id"] for t, p in recorder.chunks if t >= deployed and p["model"]["version"] == "2"}
    return {
        "stage": at(_is(messages.ModelCommand, "2", action="stage")),
        "validating": at(_is(messages.ModelReport, "2", state="validating")),
        "loading": at(_is(messages.ModelReport, "2", state="loading")),
        "staged": at(_is(messages.ModelReport, "2", state="staged")),
        "activate": at(_is(messages.ModelCommand, "2", action="activate")),
        "first_action": next((t for t, chunk_id in records["states"] if t >= deployed and chunk_id in v2_chunks),
                             None),
    }


def _steps(at: dict[str, float | None], deployed: float, verified: float, serving: float) -> dict[str, float | None]:
    """Seconds between the switch's landmarks."""
    def span(a: float | None, b: float | None) -> float | None:
        return None if a is None or b is None else b - a

    return {
        "deploy_to_verified": span(deployed, verified),
        "verified_to_stage_command": span(verified, at["stage"]),
        "validation": span(at["validating"], at["loading"]),
        "load_beside": span(at["loading"], at["staged"]),
        "stage_command_to_staged": span(at["stage"], at["staged"]),
        "staged_to_activate": span(at["staged"], at["activate"]),
        "activate_to_serving": span(at["activate"], serving),
        "verified_to_serving": span(verified, serving),
        "serving_to_first_v2_action": span(serving, at["first_action"]),
    }


def quiet_logs() -> None:
    """Components log every step at INFO; the benchmark prints its own table."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for name in ("werkzeug", "botocore", "urllib3"):
        logging.getLogger(name).setLevel(logging.ERROR)
