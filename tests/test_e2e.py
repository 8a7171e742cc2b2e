"""The whole suite as separate processes over the real IPC protocol, driving emulated servos.

``vla-edge up`` runs the local core and the four components; the test owns the arm
emulator (in a process of its own, so it can read every goal the servos received) and listens on the bus with
the real SDK client. It then checks, tick by tick, that each goal written is the
policy's action passed through the safety clamps, that those goals reached the
servos, and that bad messages injected mid-run are counted while everything keeps
running.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from support import wait_for
from support.ipc import short_run_dir

from vla_edge import messages
from vla_edge.components.actuator.config import ActuatorConfig
from vla_edge.components.actuator.safety import clamp_goal
from vla_edge.components.actuator.units import degrees_to_ticks, ticks_to_degrees
from vla_edge.errors import MessageError
from vla_edge.motors.feetech.emulator.remote import RemoteArmEmulator

pytestmark = pytest.mark.e2e

RUN_SECONDS = 12
TICK_DEG = 360.0 / 4096


class Recorder:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.chunks: dict[str, messages.ActionChunk] = {}
        self.states: list[messages.JointState] = []

    def on_chunk(self, topic: str, payload: messages.Payload) -> None:
        try:
            chunk = messages.decode(topic, payload)
        except MessageError:
            return  # the bad messages this test injects itself
        assert isinstance(chunk, messages.ActionChunk)
        with self.lock:
            self.chunks[chunk.chunk_id] = chunk

    def on_state(self, topic: str, payload: messages.Payload) -> None:
        state = messages.decode(topic, payload)
        assert isinstance(state, messages.JointState)
        with self.lock:
            self.states.append(state)


def inject_bad_messages(run_dir: Path) -> None:
    """Publish, as the components that may publish there, what a buggy or hostile peer might send."""
    from vla_edge.bus.ipc import GreengrassIpcBus
    from vla_edge.core.server import component_environment

    def connect(component: str) -> GreengrassIpcBus:
        return GreengrassIpcBus.connect(environment=component_environment(run_dir, component))

    with connect("com.vlaedge.Inference") as inference:
        topic = messages.TOPIC_ACTION_CHUNK
        good = messages.encode(
            messages.ActionChunk(
                model=messages.ModelRef(name="x", version="1", sha256="c" * 64),
                t_created=time.time(),
                t_observation=time.time(),
                t_start=time.time() - 100,
                dt=0.03,
                names=["shoulder_pan"] * 6,
                actions=[[0.0] * 6],
            )
        )[1]
        assert isinstance(good, dict)
        inference.publish(topic, b"{not json")
        inference.publish(topic, {**good, "schema": 42})
        inference.publish(topic, b"[" + b"0," * messages.MAX_JSON_BYTES + b"0]")
        inference.publish(topic, {**good, "actions": [[float("nan")] * 6]})
    with connect("com.vlaedge.Camera") as camera:
        stray = messages.FrameReady(
            camera="ceiling", seq=1, t_capture=time.time(), height=4, width=4, slot=0, segment="/dev/shm/x.ring"
        )
        camera.publish(*messages.encode(stray))


def test_suite_drives_emulated_servos_within_safety_clamps(
    demo_cache: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from vla_edge.bus.ipc import GreengrassIpcBus
    from vla_edge.core.server import component_environment

    emulator = RemoteArmEmulator()
    work = tmp_path_factory.mktemp("up")
    stderr_path = work / "up.stderr"
    # Room for the emulated servos' replies on a busy two-core machine, so a late answer is
    # not taken for a servo fault.
    (work / "suite.json").write_text(json.dumps({"com.vlaedge.Actuator": {"packetTimeoutMs": 200.0}}))
    recorder = Recorder()
    try:
        with short_run_dir() as run_dir, stderr_path.open("wb") as stderr:
            argv = [sys.executable, "-m", "vla_edge", "up", "--serial-port", emulator.device_path,
                    "--duration", str(RUN_SECONDS), "--json", "--run-dir", str(run_dir), "--cache-dir", str(demo_cache),
                    "--config", str(work / "suite.json")]
            up = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=stderr)
            try:
                wait_for(lambda: (run_dir / "core.json").is_file() or up.poll() is not None, timeout=60)
                assert up.poll() is None, stderr_path.read_text()
                monitor = component_environment(run_dir, "vla-edge.Monitor")
                with GreengrassIpcBus.connect(environment=monitor) as bus:
                    bus.subscribe(messages.TOPIC_ACTION_CHUNK, recorder.on_chunk)
                    bus.subscribe(messages.TOPIC_JOINT_STATE, recorder.on_state)
                    wait_for(lambda: any(s.chunk_id for s in recorder.states), timeout=120)
                    inject_bad_messages(run_dir)
                    stdout, _ = up.communicate(timeout=240)
            finally:
                if up.poll() is None:
                    up.kill()
                    up.wait()
        goal_writes = emulator.goal_writes()
    finally:
        emulator.stop()

    assert up.returncode == 0, stderr_path.read_text()[-4000:]
    summary = json.loads(stdout)
    assert summary["ok"] is True
    assert summary["frames"] > 0 and summary["chunks"] > 0
    assert summary["actions_applied"] > 0
    assert summary["latency_ms_p50"] is not None and summary["latency_ms_p99"] >= summary["latency_ms_p50"] > 0
    assert all(c["state"] == "RUNNING" and c["restarts"] == 0 for c in summary["components"].values()), summary
    assert summary["rejected"].get("actuator.malformed", 0) >= 1
    assert summary["rejected"].get("actuator.unsupported_schema", 0) >= 1
    assert summary["rejected"].get("actuator.oversized", 0) >= 1
    assert summary["rejected"].get("actuator.invalid", 0) >= 1
    assert summary["rejected"].get("inference.unexpected_topic", 0) >= 1

    config = ActuatorConfig()
    lower = [j.min_deg for j in config.joints]
    upper = [j.max_deg for j in config.joints]
    states, chunks = recorder.states, recorder.chunks
    checked = 0
    period = 1.0 / config.control_hz
    for previous, state in zip(states, states[1:]):
        if state.chunk_id is None or state.action_index is None or previous.goals is None:
            continue
        if state.t - previous.t > 1.5 * period:
            continue  # a tick between them published nothing (a servo bus error): its goal is unknown here
        chunk = chunks[state.chunk_id]
        assert chunk.names == state.names
        expected = clamp_goal(chunk.actions[state.action_index], previous.goals, lower, upper, config.max_step_deg)
        assert state.goals == pytest.approx(expected.goals, abs=1e-9), (state, previous.goals)
        checked += 1
    assert checked >= 20, f"only {checked} ticks executed policy actions"

    writes: dict[int, list[int]] = {}
    for _, servo, ticks in goal_writes:
        writes.setdefault(servo, []).append(ticks)
    for index, joint in enumerate(config.joints):
        degrees = [ticks_to_degrees(t) for t in writes[joint.id]]
        assert min(degrees) >= joint.min_deg - TICK_DEG and max(degrees) <= joint.max_deg + TICK_DEG
        # A policy goal moves at most maxStepDeg from the previous goal. A hold writes where the arm was
        # measured (a published position), which may lie further back when the arm lagged its goal.
        measured = {degrees_to_ticks(s.positions[index]) for s in states}
        steps = np.abs(np.diff(degrees))
        moves = [step for step, ticks in zip(steps, writes[joint.id][1:], strict=True)
                 if not any(abs(ticks - m) <= 1 for m in measured)]
        assert not moves or max(moves) <= config.max_step_deg + TICK_DEG, f"{joint.name} stepped {max(moves):.2f} deg"
        executed = {degrees_to_ticks(s.goals[index]) for s in states if s.chunk_id and s.goals}
        assert executed <= set(writes[joint.id]), f"{joint.name}: reported goals never reached the servo"
