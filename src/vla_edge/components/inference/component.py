"""Runs a LeRobot policy on the newest camera frames and joint state; publishes timed action chunks.

Start
    The policy comes from ``policyPath``; when that is empty, from ``$VLA_EDGE_POLICY_PATH``
    (the inference image points it at the model baked into the image); else the untrained
    demo policy is created in the cache. Loading checks, before any weights are read, that
    the policy's extras are installed and that its cameras, image channels and joint
    counts match the configuration (PolicyError otherwise: the component never starts).
    :meth:`InferenceComponent.run` then runs ``warmupInferences`` inferences on synthetic
    observations and only then reports RUNNING.

Threads
    Frames, joint states and instructions arrive on the transport thread and only
    update the latest values (under locks). :meth:`InferenceComponent.run` is the
    inference loop: it checks whether the current chunk needs a successor, gathers fresh
    inputs, runs the policy and publishes. A stop request (SIGTERM) is seen between
    passes, so an inference in progress is finished and its chunk published first.

Timing
    A chunk of ``T`` actions starting at ``t_start`` covers ``[t_start, t_start + T*dt)``.
    The next chunk is computed when less than ``refillFraction`` of that span remains,
    so the actuator always holds a plan that reaches beyond the next inference.
    ``t_start`` is the inference start time rounded up to the next multiple of
    ``actionDt``: action 0 is the policy's answer to the observation just taken, and
    the actuator skips the actions whose time passed while the model ran. The task used
    is the instruction that was current when the observation's newest frame was captured.

Failures
    Missing or stale inputs publish nothing (the actuator holds); an exception from
    the policy is counted, reported as ERRORED with its reason and retried one refill
    period later; the first success returns the component to RUNNING.

Models
    :class:`~vla_edge.components.inference.switching.ModelSwitcher` owns the loaded models
    and answers the model-updater's commands (stage, activate, discard). Each pass reads the
    serving model once, at its start, so a switch happens between passes; the first pass
    after an activation infers at once, without waiting for the refill point. On start the
    component reports the model it serves on the model-report topic.
"""

from __future__ import annotations

import math
import os
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from vla_edge import messages
from vla_edge.bus.base import Bus
from vla_edge.components.base import Component
from vla_edge.components.inference.config import InferenceConfig
from vla_edge.components.inference.frames import CameraFrame, LatestFrames
from vla_edge.components.inference.inputs import InputHistory, Observation
from vla_edge.components.inference.metrics import InferenceMetrics
from vla_edge.components.inference.staging import LoadedModel, estimate_memory_mb
from vla_edge.components.inference.switching import ModelSwitcher
from vla_edge.errors import AccessDenied, BusError, ConfigurationError, PolicyError
from vla_edge.models import default_cache_dir, read_model_ref
from vla_edge.policies import (
    LoadedPolicy,
    ensure_demo_policy,
    load_policy,
    set_torch_threads,
)
from vla_edge.policies.demo import UNTRAINED_WARNING

POLL_S = 0.01
"""How often the loop checks for due work; far below any sensible actionDt."""
POLICY_PATH_ENV = "VLA_EDGE_POLICY_PATH"
"""Policy directory used when ``policyPath`` is empty (the inference image sets it to its baked model)."""
EMPTY_TASK_WARNING = (
    "the %s policy is language-conditioned but the task instruction is empty: it will act on an empty "
    "instruction. Set the 'task' configuration key or publish one on " + messages.TOPIC_INSTRUCTION
)


def resolve_policy_path(config: InferenceConfig) -> tuple[Path, str]:
    """The policy directory to load and where that choice came from (for the log)."""
    if config.policy_path:
        return Path(config.policy_path).expanduser(), "policyPath"
    from_env = os.environ.get(POLICY_PATH_ENV, "").strip()
    if from_env:
        return Path(from_env).expanduser(), f"${POLICY_PATH_ENV} (policyPath is empty)"
    cache = Path(config.cache_dir).expanduser() if config.cache_dir else default_cache_dir()
    return ensure_demo_policy(cache), "the demo policy (policyPath and $VLA_EDGE_POLICY_PATH are empty)"


class InferenceComponent(Component[InferenceConfig]):
    name = "inference"

    def __init__(
        self, bus: Bus, config: InferenceConfig, policy: LoadedPolicy | None = None, **switching: Any
    ) -> None:
        """Load the policy (or use ``policy``, already loaded) and subscribe to the inputs and model commands.

        Raises PolicyError when the policy cannot be loaded or does not fit the configured
        cameras and joints; nothing is subscribed or published then. An injected ``policy``
        keeps the device, dtype and compile settings it was loaded with. ``switching``: keyword
        arguments of :class:`ModelSwitcher` (the validator, loader and free-memory reading).
        """
        super().__init__(bus, config)
        started = time.perf_counter()
        policy = policy if policy is not None else self._load_policy(config)
        load_ms = round((time.perf_counter() - started) * 1000.0, 3)
        policy.check_io(config.cameras, config.joint_names)
        try:
            ref = read_model_ref(policy.path)
        except ConfigurationError as exc:
            raise PolicyError(f"cannot identify the policy in {policy.path}: {exc}") from exc
        serving = LoadedModel(ref, policy, estimate_memory_mb(policy.path), load_ms=load_ms)
        self.models = ModelSwitcher(serving, config, self._publish_report, self.counters, task=lambda: self.task,
                                    **switching)
        if serving.untrained:
            self.log.warning(UNTRAINED_WARNING, policy.path)
        self.frames = LatestFrames(list(config.cameras), Path(config.frame_dir), self.counters)
        self.inputs = InputHistory(list(config.joint_names), config.task)
        self.stats = InferenceMetrics()
        self._unexpected_cameras: set[str] = set()
        self._task_used: str | None = None
        self._next_attempt = 0.0
        self._waiting_for: str | None = None
        self._failing = False
        if policy.needs_language and not config.task:
            self.log.warning(EMPTY_TASK_WARNING, policy.policy_type)
        self.router.subscribe(messages.TOPIC_FRAME_ALL, self._on_frame, expect=messages.FrameReady)
        self.router.subscribe(messages.TOPIC_JOINT_STATE, self._on_joint_state, expect=messages.JointState)
        self.router.subscribe(messages.TOPIC_INSTRUCTION, self._on_instruction, expect=messages.TaskInstruction)
        try:
            self.router.subscribe(messages.TOPIC_MODEL_COMMAND, self.models.handle, expect=messages.ModelCommand)
        except AccessDenied as exc:  # an older recipe: serve the model anyway, without switching
            self.log.error(
                "model switching is off: %s. Grant SubscribeToTopic on %s and PublishToTopic on %s in the "
                "inference recipe's accessControl, then deploy it again", exc, messages.TOPIC_MODEL_COMMAND,
                messages.TOPIC_MODEL_REPORT,
            )

    @property
    def serving(self) -> LoadedModel | None:
        """The model the inference loop uses now (None only while a hold switch has unloaded it)."""
        return self.models.serving

    @property
    def policy(self) -> LoadedPolicy:
        """The serving policy; PolicyError while no model is loaded."""
        serving = self.models.serving
        if serving is None:
            raise PolicyError("no model is loaded (a switch under hold is in progress)")
        return serving.policy

    @property
    def model_ref(self) -> messages.ModelRef | None:
        serving = self.models.serving
        return None if serving is None else serving.ref

    @property
    def untrained(self) -> bool:
        serving = self.models.serving
        return serving is not None and serving.untrained

    def _publish_report(self, report: messages.Message) -> None:
        try:
            self.router.publish(report)
        except BusError as exc:
            self.counters.add("publish_errors")
            self.log.warning("model report not published: %s", exc)

    def _load_policy(self, config: InferenceConfig) -> LoadedPolicy:
        path, source = resolve_policy_path(config)
        self.log.info("policy: %s from %s", path, source)
        set_torch_threads(config.torch_threads)
        return load_policy(
            path, config.device, dtype=config.dtype, compile=config.compile,
            cameras=config.cameras, joint_names=config.joint_names,
        )

    # --- inputs (transport thread) ---------------------------------------------------------

    def _on_frame(self, frame: messages.FrameReady) -> None:
        if frame.camera not in self.config.cameras:
            self.counters.add("rejected.unexpected_topic")
            if frame.camera not in self._unexpected_cameras:  # once per camera: a stray camera runs at 30 Hz
                self._unexpected_cameras.add(frame.camera)
                self.log.warning(
                    "frames on %s are from camera %r, which this policy does not use (configured: %s); ignored",
                    frame.topic(), frame.camera, self.config.cameras,
                )
            return
        self.frames.announce(frame)

    def _on_joint_state(self, state: messages.JointState) -> None:
        missing = [name for name in self.config.joint_names if name not in state.names]
        if missing:
            self.counters.add("joint_state_mismatch")
            self.log.warning("joint state lacks configured joints %s (has %s); ignored", missing, state.names)
            return
        self.inputs.add_joint_state(state)

    def _on_instruction(self, instruction: messages.TaskInstruction) -> None:
        previous = self.inputs.set_task(instruction.text, time.time())
        self.log.info("task instruction set to %r (was %r); used from the next observation", instruction.text, previous)
        serving = self.models.serving
        if serving is not None and serving.policy.needs_language and not instruction.text:
            self.log.warning(EMPTY_TASK_WARNING, serving.policy.policy_type)

    @property
    def task(self) -> str:
        """The newest task instruction."""
        return self.inputs.task

    # --- inference loop -----------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        self.warm_up(stop)
        if stop.is_set():
            return
        self.models.report_start()
        self.set_state("RUNNING", self._serving_detail())
        while not stop.is_set():
            self.step()
            self.publish_health()
            stop.wait(POLL_S)

    def warm_up(self, stop: threading.Event | None = None) -> list[float]:
        """``warmupInferences`` inferences on synthetic observations; PolicyError if the policy cannot run."""
        count = self.config.warmup_inferences
        latencies: list[float] = []
        for _ in range(count):
            if stop is not None and stop.is_set():
                break
            latencies += self.policy.warm_up(1, self.task)
        self.stats.warmup_ms = latencies
        if latencies:
            self.log.info(
                "warm-up: %d inference(s) on synthetic observations, first %.1f ms, last %.1f ms "
                "(device %s, %s%s)", len(latencies), latencies[0], latencies[-1], self.policy.device,
                self.policy.dtype, ", compiled" if self.policy.compiled else "",
            )
        return latencies

    def step(self) -> messages.ActionChunk | None:
        """One pass of the loop: infer and publish if a chunk is due (or a model was activated) and inputs are fresh."""
        now = time.time()
        model, activation = self.models.begin_pass()  # the one read of the serving model in this pass
        if model is None:  # a switch under hold unloaded it: publish nothing until the next one is activated
            self.set_state("RUNNING", self._serving_detail())
            return None
        if activation is None and now < self._next_attempt:
            return None
        policy = model.policy
        gathered = self._gather(now, policy)
        if gathered is None:
            return None
        current, history, joint_state_age_s = gathered
        self._note_task(current)
        dt = self.config.action_dt
        t_start = math.ceil(now / dt) * dt
        started = time.perf_counter()
        try:
            observation = policy.build_observation(current.images, current.state, current.task)
            if history:
                older = [policy.build_observation(h.images, h.state, h.task) for h in history]
                actions = policy.predict_chunk(observation, history=older)
            else:
                actions = policy.predict_chunk(observation)
            chunk = messages.ActionChunk(
                model=model.ref,
                t_created=time.time(),
                t_observation=current.t_observation,
                t_start=t_start,
                dt=dt,
                names=list(self.config.joint_names),
                actions=np.round(actions.astype(np.float64), 4).tolist(),
            )
        except Exception as exc:  # noqa: BLE001 - any policy failure: hold (no chunk), report, retry later
            if activation is not None and self.models.first_chunk_failed(activation, exc):
                return None  # the previous model serves again; its own refill point still holds
            self._inference_failed(now, exc, policy)
            return None
        self.stats.inference(
            (time.perf_counter() - started) * 1000.0, (now - current.t_observation) * 1000.0, joint_state_age_s * 1000.0
        )
        span = len(chunk.actions) * dt
        self._next_attempt = t_start + span - self.config.refill_fraction * span
        try:
            self.router.publish(chunk)
        except BusError as exc:
            self.counters.add("publish_errors")
            self.log.warning("action chunk not published: %s", exc)
            return None
        if self.stats.published(chunk, time.time()):
            self.counters.add("queue_starved")
        if activation is not None:
            self.models.first_chunk(activation, chunk)
        if self._failing:
            self.log.info("inference recovered")
        self._failing = False
        self.set_state("RUNNING", self._serving_detail())
        return chunk

    def _serving_detail(self) -> str:
        serving = self.models.serving
        return "no model loaded" if serving is None else f"serving {serving.describe()}"

    def _note_task(self, observation: Observation) -> None:
        if observation.task != self._task_used:
            if self._task_used is not None:
                self.log.info("inference now uses task %r (was %r)", observation.task, self._task_used)
            self._task_used = observation.task

    def _inference_failed(self, now: float, exc: Exception, policy: LoadedPolicy) -> None:
        self.counters.add("inference_errors")
        reason = str(exc) if isinstance(exc, PolicyError) else f"{type(exc).__name__}: {exc}"
        if not self._failing:
            self.log.error("inference failed; holding (no chunks) and retrying", exc_info=exc)
        self._failing = True
        self.set_state("ERRORED", f"inference failed: {reason}")
        self._next_attempt = now + self._refill_period(policy)

    def _refill_period(self, policy: LoadedPolicy) -> float:
        steps = policy.n_action_steps or 1
        return max(self.config.refill_fraction * steps * self.config.action_dt, self.config.action_dt)

    def _gather(self, now: float, policy: LoadedPolicy) -> tuple[Observation, list[Observation], float] | None:
        """The current observation, its history (oldest first) and the joint state's age; None while inputs lack."""
        limit = self.config.max_observation_age_s
        joint_state = self.inputs.latest_joint_state()
        problems: dict[str, str] = {}  # stable key (for "log once") -> description
        frames: dict[str, CameraFrame] = {}
        for camera in self.config.cameras:
            frame = self.frames.read(camera)
            if frame is None:
                problems[f"no-frame:{camera}"] = f"no frame from camera {camera!r}"
            elif now - frame.t_capture > limit:
                problems[f"stale-frame:{camera}"] = f"camera {camera!r} frame is {now - frame.t_capture:.1f} s old"
            else:
                frames[camera] = frame
        if joint_state is None:
            problems["no-joints"] = "no joint state"
        elif now - joint_state.t > limit:
            problems["stale-joints"] = f"joint state is {now - joint_state.t:.1f} s old"
        if problems:
            key = ",".join(problems)
            if self._waiting_for != key:
                self._waiting_for = key
                self.log.info("waiting for inputs (max age %.2f s): %s", limit, "; ".join(problems.values()))
            return None
        if self._waiting_for is not None:
            self.log.info("all inputs present")
            self._waiting_for = None
        assert joint_state is not None
        t_observation = max(frame.t_capture for frame in frames.values())
        task = self.inputs.task_at(t_observation)
        current = Observation(
            {camera: frames[camera].image for camera in self.config.cameras},
            self.inputs.positions(joint_state), t_observation, task,
        )
        return current, self._history(frames, t_observation, task, policy.observation_steps), now - joint_state.t

    def _history(
        self, frames: dict[str, CameraFrame], t_observation: float, task: str, steps: int
    ) -> list[Observation]:
        """Observations ``k * actionDt`` before the current one, oldest first, for multi-observation policies."""
        history = []
        for k in range(steps - 1, 0, -1):
            t = t_observation - k * self.config.action_dt
            state = self.inputs.joint_state_at(t)
            if state is None:
                continue
            images = {camera: self.frames.read_near(camera, t, frame).image for camera, frame in frames.items()}
            history.append(Observation(images, self.inputs.positions(state), t, task))
        return history

    # --- health --------------------------------------------------------------------------------

    def metrics(self) -> dict[str, float | None]:
        return {
            **self.stats.as_dict(time.time()),
            "chunks_published": float(self.counters.get("published.action_chunk")),
            "untrained_policy": 1.0 if self.untrained else 0.0,
            **self.models.metrics(),
            **{key: float(value) for key, value in self.frames.reader_counters().items()},
        }

    def close(self) -> None:
        self.models.close()
        self.frames.close()
        super().close()
