"""Driving the model-updater in tests: a fake inference component, a manual clock, and a harness.

:class:`FakeInference` answers :class:`~vla_edge.messages.ModelCommand` with
:class:`~vla_edge.messages.ModelReport` on an in-memory bus, following the contract of
``messages.py`` (and of the real :mod:`vla_edge.components.inference.switching`): one serving
model and at most one other loaded; ``stage`` checks identity, memory and features before
``loading``/``staged`` (``beside``), ``insufficient_memory`` unless ``allow_unload``; ``activate``
swaps and reports ``serving`` with a first chunk id, keeping the previous model loaded;
``discard`` unloads a non-serving model. Failures are injected per model version. Answers
come synchronously, inside the updater's ``publish``, which the real component never does
but the updater must survive.

:class:`UpdaterHarness` runs a ModelUpdaterComponent on its own thread and records every
ModelStatus it publishes; :class:`ManualClock` is the clock tests step for probation and
JointState freshness.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from support import wait_for
from vla_edge import messages
from vla_edge.bus.memory import InMemoryBroker, InMemoryBus
from vla_edge.components.base import load_config
from vla_edge.components.model_updater.component import ModelUpdaterComponent
from vla_edge.components.model_updater.config import ModelUpdaterConfig
from vla_edge.errors import ConfigurationError
from vla_edge.models import read_model_ref

JOINTS = ("shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper")
PUBLISH = "aws.greengrass#PublishToTopic"
SUBSCRIBE = "aws.greengrass#SubscribeToTopic"


def grants(component: str, publish: list[str] | None = None, subscribe: list[str] | None = None) -> dict[str, Any]:
    """A configuration whose ``accessControl`` grants these local topics (for a broker that enforces it)."""
    policies = {f"{component}:pubsub:{index}": {"operations": [operation], "resources": resources}
                for index, (operation, resources) in enumerate([(PUBLISH, publish), (SUBSCRIBE, subscribe)])
                if resources}
    return {"accessControl": {"aws.greengrass.ipc.pubsub": policies}}


class ManualClock:
    """A monotonic clock that moves only when the test says so."""

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds


@dataclass
class Loaded:
    ref: messages.ModelRef
    path: str
    memory_mb: float
    beside: bool = False


@dataclass
class FakeInference:
    """See the module docstring. ``capacity_mb``: memory for models; ``failures``: version -> (action, reason)."""

    broker: InMemoryBroker
    serving: Loaded | None = None
    cameras: tuple[str, ...] = ("front",)
    joints: tuple[str, ...] = JOINTS
    capacity_mb: float = 1e9
    failures: dict[str, tuple[str, str]] = field(default_factory=dict)
    """Model version -> (``stage``/``activate``, reason): that command fails with that reason."""
    silent: set[str] = field(default_factory=set)
    """Commands never answered (a hung or crashed inference component): ``activate`` or ``activate:<version>``."""
    other: Loaded | None = None
    commands: list[messages.ModelCommand] = field(default_factory=list)
    reports: list[messages.ModelReport] = field(default_factory=list)
    chunks: int = 0
    errors: int = 0
    on_command: Any = None
    """Called with each command before it is answered (e.g. to look at the store meanwhile)."""

    def __post_init__(self) -> None:
        self.bus: InMemoryBus = self.broker.bus(grants(
            "com.vlaedge.Inference", publish=[messages.TOPIC_MODEL_REPORT, "vla-edge/health/inference"],
            subscribe=[messages.TOPIC_MODEL_COMMAND]), name="com.vlaedge.Inference")
        self._lock = threading.RLock()
        self.bus.subscribe(messages.TOPIC_MODEL_COMMAND, self._receive)

    # --- what the real component does on its own ------------------------------------------------

    def announce(self) -> None:
        """The report on start: ``serving`` without a request id."""
        if self.serving is not None:
            self._report(self.serving.ref, "serving", None, path=self.serving.path, detail="serving since start")

    def restart(self, serving: Loaded) -> None:
        """The container restarted with ``serving`` (everything else is gone) and announces it."""
        with self._lock:
            self.serving, self.other, self.chunks, self.errors = serving, None, 0, 0
        self.announce()

    def health(self, state: str = "RUNNING", chunks: int = 1, errors: int = 0, detail: str = "") -> None:
        """One health message; ``chunks``/``errors`` are added to the counters first."""
        with self._lock:
            self.chunks += chunks
            self.errors += errors
            counters = {"published.action_chunk": self.chunks, "inference_errors": self.errors}
        self.bus.publish(*messages.encode(messages.ComponentHealth(
            t=time.time(), component="inference", state=state, detail=detail, counters=counters)))  # type: ignore[arg-type]

    def loaded(self) -> list[messages.ModelRef]:
        with self._lock:
            return [m.ref for m in (self.serving, self.other) if m is not None]

    # --- commands ---------------------------------------------------------------------------------

    def _receive(self, topic: str, payload: Any) -> None:
        command = messages.decode(topic, payload)
        assert isinstance(command, messages.ModelCommand)
        self.commands.append(command)
        if self.on_command is not None:
            self.on_command(command)
        if command.action in self.silent or f"{command.action}:{command.model.version}" in self.silent:
            return
        if command.action == "stage":
            self._stage(command)
        elif command.action == "activate":
            self._activate(command)
        else:
            self._discard(command)

    def _stage(self, command: messages.ModelCommand) -> Loaded | None:
        ref, rid = command.model, command.request_id
        with self._lock:
            if self.serving is not None and self.serving.ref == ref:
                return self._report(ref, "serving", rid, detail="already serving")
            if self.other is not None and self.other.ref == ref:
                return self._report(ref, "staged", rid, beside=self.other.beside, detail="already loaded")
            if self.other is not None:
                return self._fail(ref, rid, "slot_occupied", "another model is loaded beside; discard it first")
        if not command.path:
            return self._fail(ref, rid, "bad_command", "stage of a model that is not loaded needs its path")
        self._report(ref, "validating", rid, path=command.path)
        path = Path(command.path)
        try:
            actual = read_model_ref(path)
        except ConfigurationError as exc:
            return self._fail(ref, rid, "load_failed", str(exc))
        if actual != ref:
            return self._fail(ref, rid, "identity_mismatch", f"{path} holds {actual.name} {actual.version}")
        need = command.memory_mb if command.memory_mb is not None else 100.0
        with self._lock:
            used = sum(m.memory_mb for m in (self.serving, self.other) if m is not None)
            serving = self.serving
        beside = need + used <= self.capacity_mb
        if not beside and not command.allow_unload:
            return self._fail(ref, rid, "insufficient_memory", f"needs {need:.0f} MB; hold the arm and retry with "
                              "allowUnload")
        if not beside and serving is not None and need > self.capacity_mb:
            return self._fail(ref, rid, "insufficient_memory", "does not fit even alone")
        mismatch = self._feature_problem(path)
        if mismatch:
            return self._fail(ref, rid, "feature_mismatch", mismatch)
        failure = self.failures.get(ref.version)
        if failure is not None and failure[0] == "stage":
            return self._fail(ref, rid, failure[1], f"injected {failure[1]}")
        if not beside:
            with self._lock:
                self.serving = None  # unloaded to make room (the updater holds the arm)
        self._report(ref, "loading", rid, beside=beside, path=command.path)
        model = Loaded(ref, command.path, need, beside)
        with self._lock:
            self.other = model
        self._report(ref, "staged", rid, beside=beside, path=command.path, load_ms=5.0, memory_mb=need)
        return model

    def _feature_problem(self, path: Path) -> str | None:
        config = json.loads((path / "config.json").read_text())
        cameras = sorted(k.removeprefix("observation.images.") for k, v in config.get("input_features", {}).items()
                         if v.get("type") == "VISUAL")
        missing = [c for c in cameras if c not in self.cameras]
        if missing:
            return f"the model wants cameras {missing}; this device has {list(self.cameras)}"
        state = config.get("input_features", {}).get("observation.state", {}).get("shape")
        action = config.get("output_features", {}).get("action", {}).get("shape")
        if state != [len(self.joints)] or action != [len(self.joints)]:
            return f"state {state} / action {action} do not fit the {len(self.joints)} joints {list(self.joints)}"
        return None

    def _activate(self, command: messages.ModelCommand) -> None:
        ref, rid = command.model, command.request_id
        with self._lock:
            if self.serving is not None and self.serving.ref == ref:
                self._report(ref, "serving", rid, detail="already serving")
                return
            loaded = self.other is not None and self.other.ref == ref
        if not loaded and self._stage(command) is None:
            return  # staging failed and said so
        failure = self.failures.get(ref.version)
        if failure is not None and failure[0] == "activate":
            self._fail(ref, rid, failure[1], "the first inference failed; the previous model serves again")
            return
        with self._lock:
            assert self.other is not None and self.other.ref == ref
            self.serving, self.other = self.other, self.serving
            model = self.serving
        self._report(ref, "serving", rid, first_chunk_id=uuid.uuid4().hex, beside=model.beside, path=model.path)

    def _discard(self, command: messages.ModelCommand) -> None:
        ref, rid = command.model, command.request_id
        with self._lock:
            if self.serving is not None and self.serving.ref == ref:
                refusal = True
            else:
                refusal = False
                if self.other is not None and self.other.ref == ref:
                    self.other = None
        if refusal:
            self._fail(ref, rid, "serving", "it is the serving model; activate another model first")
        else:
            self._report(ref, "unloaded", rid, detail="unloaded")

    def _fail(self, ref: messages.ModelRef, rid: str | None, reason: str, detail: str) -> None:
        self._report(ref, "failed", rid, reason=reason, detail=detail)

    def _report(self, ref: messages.ModelRef, state: str, rid: str | None, **fields: Any) -> None:
        report = messages.ModelReport(t=time.time(), request_id=rid, model=ref, state=state, **fields)  # type: ignore[arg-type]
        self.reports.append(report)
        self.bus.publish(*messages.encode(report))


class UpdaterHarness:
    """A ModelUpdaterComponent on a thread, on ``broker``, with every ModelStatus it publishes recorded."""

    def __init__(self, broker: InMemoryBroker, configuration: dict[str, Any], clock: ManualClock,
                 **component_args: Any) -> None:
        self.broker = broker
        self.clock = clock
        self.statuses: list[messages.ModelStatus] = []
        self._lock = threading.Lock()
        watcher = broker.bus(grants("watcher", subscribe=[messages.TOPIC_MODEL_STATUS]), name="watcher")
        watcher.subscribe(messages.TOPIC_MODEL_STATUS, self._on_status)
        self.bus = broker.bus(configuration, name="com.vlaedge.ModelUpdater")
        config = load_config(ModelUpdaterConfig, configuration)
        self.component = ModelUpdaterComponent(self.bus, config, clock=clock, **component_args)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self.component.run, args=(self._stop,), daemon=True)

    def _on_status(self, topic: str, payload: Any) -> None:
        status = messages.decode(topic, payload)
        assert isinstance(status, messages.ModelStatus)
        with self._lock:
            self.statuses.append(status)

    def start(self) -> UpdaterHarness:
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        self._thread.join(15)
        self.component.close()

    def states(self) -> list[str]:
        """The states published, consecutive repeats (progress, periodic reports) folded."""
        with self._lock:
            states = [s.state for s in self.statuses]
        return [s for i, s in enumerate(states) if i == 0 or states[i - 1] != s]

    def latest(self) -> messages.ModelStatus | None:
        with self._lock:
            return self.statuses[-1] if self.statuses else None

    def wait_status(self, state: str, model: messages.ModelRef | None = None, timeout: float = 20.0,
                    after: int = 0) -> messages.ModelStatus:
        """The first status at index ``after`` or later in ``state`` (and about ``model`` when given)."""
        def found() -> messages.ModelStatus | None:
            with self._lock:
                for status in self.statuses[after:]:
                    if status.state == state and (model is None or status.model == model):
                        return status
            return None

        return wait_for(found, timeout)  # type: ignore[return-value]

    def count(self) -> int:
        with self._lock:
            return len(self.statuses)

    def advance(self, seconds: float, fake: FakeInference | None = None, step: float = 1.0, **health: Any) -> None:
        """Move the clock in ``step``s; the fake publishes one health message per step when given."""
        moved = 0.0
        while moved < seconds:
            self.clock.advance(step)
            moved += step
            if fake is not None:
                fake.health(**health)
