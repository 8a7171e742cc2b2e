"""Helpers for actuator tests: an actuator on its own thread against the STS3215 emulator, on an in-memory bus."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from vla_edge import messages
from vla_edge.bus.memory import InMemoryBroker
from vla_edge.components.actuator.component import ActuatorComponent
from vla_edge.components.actuator.config import ActuatorConfig
from vla_edge.components.base import load_config
from vla_edge.motors.feetech.emulator import ArmEmulator
from vla_edge.motors.feetech.emulator.remote import RemoteArmEmulator

MODEL = messages.ModelRef(name="test-policy", version="1", sha256="ab" * 32)
NAMES = ["shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper"]


@dataclass
class Harness:
    emulator: ArmEmulator | RemoteArmEmulator
    broker: InMemoryBroker
    component: ActuatorComponent
    thread: threading.Thread
    stop: threading.Event
    states: list[messages.JointState] = field(default_factory=list)
    health: list[messages.ComponentHealth] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def publish(self, message: messages.Message) -> None:
        topic, payload = messages.encode(message)
        self.broker.bus().publish(topic, payload)

    def publish_raw(self, topic: str, payload: Any) -> None:
        self.broker.bus().publish(topic, payload)

    def joint_states(self) -> list[messages.JointState]:
        with self.lock:
            return list(self.states)

    def last_state(self) -> messages.JointState | None:
        with self.lock:
            return self.states[-1] if self.states else None

    def wait_ticks(self, count: int, timeout: float = 10.0) -> None:
        """Wait until ``count`` more JointStates were published (the loop is alive and ticking)."""
        start = len(self.joint_states())
        deadline = time.monotonic() + timeout
        while len(self.joint_states()) < start + count:
            assert time.monotonic() < deadline, f"fewer than {count} ticks in {timeout} s"
            assert self.thread.is_alive(), "the control loop died"
            time.sleep(0.01)


def chunk(actions: list[list[float]], lead_s: float = 0.05, dt: float = 1 / 30, names: list[str] = NAMES):
    now = time.time()
    return messages.ActionChunk(
        model=MODEL,
        t_created=now,
        t_observation=now - 0.02,
        t_start=now + lead_s,
        dt=dt,
        names=names,
        actions=actions,
    )


def actuator_config(port: str, **overrides: Any) -> ActuatorConfig:
    raw = {
        "serialPort": port,
        "holdAfterS": 0.3,
        "torqueOffAfterS": 60.0,
        "packetTimeoutMs": 300.0,
        "reconnectIntervalS": 0.2,
        **overrides,
    }
    return load_config(ActuatorConfig, raw)


def start(emulator: ArmEmulator | RemoteArmEmulator, config: ActuatorConfig) -> Harness:
    broker = InMemoryBroker()
    component = ActuatorComponent(broker.bus(), config)
    stop = threading.Event()
    thread = threading.Thread(target=component.run, args=(stop,), name="actuator-under-test", daemon=True)
    harness = Harness(emulator, broker, component, thread, stop)

    def on_state(topic: str, payload: Any) -> None:
        message = messages.decode(topic, payload)
        with harness.lock:
            if isinstance(message, messages.JointState):
                harness.states.append(message)
            elif isinstance(message, messages.ComponentHealth):
                harness.health.append(message)

    observer = broker.bus()
    observer.subscribe(messages.TOPIC_JOINT_STATE, on_state)
    observer.subscribe(messages.TOPIC_HEALTH.format(component="actuator"), on_state)
    thread.start()
    return harness


def finish(harness: Harness) -> None:
    harness.stop.set()
    harness.thread.join(timeout=15)
    assert not harness.thread.is_alive(), "the actuator did not stop"
    harness.component.close()
