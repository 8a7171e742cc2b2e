"""Runs a LeRobot policy on the newest camera frames and joint state; publishes timed action chunks.

Threads
    Frames, joint states and instructions arrive on the transport thread and only
    replace the latest value per input (under a lock). :meth:`InferenceComponent.run`
    is the inference loop: it checks whether the current chunk needs a successor,
    gathers fresh inputs, runs the policy and publishes.

Timing
    A chunk of ``T`` actions starting at ``t_start`` covers ``[t_start, t_start + T*dt)``.
    The next chunk is computed when less than ``refillFraction`` of that span remains,
    so the actuator always holds a plan that reaches beyond the next inference.
    ``t_start`` is the inference start time rounded up to the next multiple of
    ``actionDt``: action 0 is the policy's answer to the observation just taken, and
    the actuator skips the actions whose time passed while the model ran.

Failures
    Missing or stale inputs publish nothing (the actuator holds); an exception from
    the policy is counted, reported as ERRORED with its reason and retried one refill
    period later; the first success returns the component to RUNNING.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from pathlib import Path

import numpy as np

from vla_edge import messages
from vla_edge.bus.base import Bus
from vla_edge.components.base import Component
from vla_edge.components.inference.config import InferenceConfig
from vla_edge.components.inference.frames import LatestFrames
from vla_edge.errors import BusError, ConfigurationError, PolicyError
from vla_edge.models import default_cache_dir, read_model_ref
from vla_edge.policies import (
    LoadedPolicy,
    ensure_demo_policy,
    is_demo_policy,
    load_policy,
    set_torch_threads,
)
from vla_edge.policies.demo import UNTRAINED_WARNING

POLL_S = 0.01
"""How often the loop checks for due work; far below any sensible actionDt."""
LATENCY_WINDOW = 256


class InferenceComponent(Component[InferenceConfig]):
    name = "inference"

    def __init__(self, bus: Bus, config: InferenceConfig, policy: LoadedPolicy | None = None) -> None:
        """Load the policy (or use ``policy``, already loaded) and subscribe to the inputs.

        Raises PolicyError when the policy cannot be loaded or does not fit the configured
        cameras and joints.
        """
        super().__init__(bus, config)
        self.policy = policy if policy is not None else self._load_policy(config)
        self.policy.check_io(config.cameras, config.joint_names)
        try:
            self.model_ref = read_model_ref(self.policy.path)
        except ConfigurationError as exc:
            raise PolicyError(f"cannot identify the policy in {self.policy.path}: {exc}") from exc
        self.untrained = is_demo_policy(self.policy.path)
        if self.untrained:
            self.log.warning(UNTRAINED_WARNING, self.policy.path)
        self._lock = threading.Lock()
        self.frames = LatestFrames(list(config.cameras), Path(config.frame_dir), self.counters)
        self._unexpected_cameras: set[str] = set()
        self._joint_state: messages.JointState | None = None
        self._task = config.task
        self._latencies_ms: deque[float] = deque(maxlen=LATENCY_WINDOW)
        self._observation_age_ms: float | None = None
        self._joint_state_age_ms: float | None = None
        self._next_attempt = 0.0
        self._waiting_for: str | None = None
        self._failing = False
        self.router.subscribe(messages.TOPIC_FRAME_ALL, self._on_frame, expect=messages.FrameReady)
        self.router.subscribe(messages.TOPIC_JOINT_STATE, self._on_joint_state, expect=messages.JointState)
        self.router.subscribe(messages.TOPIC_INSTRUCTION, self._on_instruction, expect=messages.TaskInstruction)

    def _load_policy(self, config: InferenceConfig) -> LoadedPolicy:
        set_torch_threads(config.torch_threads)
        if config.policy_path:
            path = Path(config.policy_path).expanduser()
        else:
            cache = Path(config.cache_dir).expanduser() if config.cache_dir else default_cache_dir()
            path = ensure_demo_policy(cache)
        return load_policy(path, config.device)

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
        with self._lock:
            self._joint_state = state

    def _on_instruction(self, instruction: messages.TaskInstruction) -> None:
        with self._lock:
            self._task = instruction.text
        self.log.info("task instruction set to %r", instruction.text)

    @property
    def task(self) -> str:
        with self._lock:
            return self._task

    # --- inference loop -----------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        self.set_state("RUNNING")
        while not stop.is_set():
            self.step()
            self.publish_health()
            stop.wait(POLL_S)

    def step(self) -> messages.ActionChunk | None:
        """One pass of the loop: infer and publish if a chunk is due and inputs are fresh."""
        now = time.time()
        if now < self._next_attempt:
            return None
        gathered = self._gather(now)
        if gathered is None:
            return None
        images, state, t_observation, task = gathered
        dt = self.config.action_dt
        t_start = math.ceil(now / dt) * dt
        started = time.perf_counter()
        try:
            observation = self.policy.build_observation(images, state, task)
            actions = self.policy.predict_chunk(observation)
            chunk = messages.ActionChunk(
                model=self.model_ref,
                t_created=time.time(),
                t_observation=t_observation,
                t_start=t_start,
                dt=dt,
                names=list(self.config.joint_names),
                actions=np.round(actions.astype(np.float64), 4).tolist(),
            )
        except Exception as exc:  # noqa: BLE001 - any policy failure: hold (no chunk), report, retry later
            self._inference_failed(now, exc)
            return None
        self._latencies_ms.append((time.perf_counter() - started) * 1000.0)
        self._observation_age_ms = (now - t_observation) * 1000.0
        span = len(chunk.actions) * dt
        self._next_attempt = t_start + span - self.config.refill_fraction * span
        try:
            self.router.publish(chunk)
        except BusError as exc:
            self.counters.add("publish_errors")
            self.log.warning("action chunk not published: %s", exc)
            return None
        if self._failing:
            self.log.info("inference recovered")
        self._failing = False
        self.set_state("RUNNING")
        return chunk

    def _inference_failed(self, now: float, exc: Exception) -> None:
        self.counters.add("inference_errors")
        reason = str(exc) if isinstance(exc, PolicyError) else f"{type(exc).__name__}: {exc}"
        if not self._failing:
            self.log.error("inference failed; holding (no chunks) and retrying", exc_info=exc)
        self._failing = True
        self.set_state("ERRORED", f"inference failed: {reason}")
        self._next_attempt = now + self._refill_period()

    def _refill_period(self) -> float:
        steps = self.policy.n_action_steps or 1
        return max(self.config.refill_fraction * steps * self.config.action_dt, self.config.action_dt)

    def _gather(self, now: float) -> tuple[dict[str, np.ndarray], list[float], float, str] | None:
        """Latest fresh frame per camera, joint positions in configured order, newest capture time, task."""
        limit = self.config.max_observation_age_s
        with self._lock:
            joint_state = self._joint_state
            task = self._task
        problems: dict[str, str] = {}  # stable key (for "log once") -> description
        frames = {}
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
        self._joint_state_age_ms = (now - joint_state.t) * 1000.0
        by_name = dict(zip(joint_state.names, joint_state.positions, strict=True))
        state = [by_name[name] for name in self.config.joint_names]
        images = {camera: frames[camera].image for camera in self.config.cameras}
        t_observation = max(frames[camera].t_capture for camera in self.config.cameras)
        return images, state, t_observation, task

    # --- health --------------------------------------------------------------------------------

    def metrics(self) -> dict[str, float | None]:
        latencies = list(self._latencies_ms)
        p50 = p99 = None
        if latencies:
            p50, p99 = (float(v) for v in np.percentile(latencies, [50, 99]))
        return {
            "inference_latency_p50_ms": p50,
            "inference_latency_p99_ms": p99,
            "chunks_published": float(self.counters.get("published.action_chunk")),
            "observation_age_ms": self._observation_age_ms,
            "joint_state_age_ms": self._joint_state_age_ms,
            "untrained_policy": 1.0 if self.untrained else 0.0,
            **{key: float(value) for key, value in self.frames.reader_counters().items()},
        }

    def close(self) -> None:
        self.frames.close()
        super().close()
