"""The actuator of the switch benchmark in a process of its own, bridged to the benchmark's in-memory bus.

On a device the actuator is its own component process, so a model switch in the inference
process (a load holding the GIL, the garbage collection of a discarded model) can take CPU from
it but never hold its interpreter. Run in the benchmark's process instead, the actuator stalls
on every such pause (discarding the old model, a ``gc.collect``, stopped its ticks for ~0.3 s
when tried), and the tick figures would blame the switch for a GIL the deployment does not
share. So here:

* this module's child (``python _model_update_actuator.py --fd N ...``) runs
  :class:`ActuatorComponent` at ``--hz`` on its own ``InMemoryBroker``, with a real
  ``FeetechBus`` talking to :class:`ArmEmulator` over a pseudo-terminal (``--arm emulator``; the
  emulator is a thread of the child, as in ``actuator_loop.py``), or with the tests' in-memory
  ``FakeServoBus`` (``--arm fake``). On a starved shared machine the emulator misses replies a
  real servo sends in microseconds (bus errors, fault stops, in any window); ``fake`` then
  leaves only what the switch does to the control loop's scheduling;
* the child forwards its joint states and health to the parent and publishes what the parent
  forwards (action chunks, model status, e-stops), over a socketpair with
  ``multiprocessing.connection``;
* the child stamps each of its joint states with ``time.monotonic()`` (CLOCK_MONOTONIC, the
  same clock in every process on Linux) when it is published, at the end of its tick, samples
  its counters every 50 ms, and sends both back when told to stop.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import socket
import subprocess
import sys
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from vla_edge import messages

INBOUND = (messages.TOPIC_ACTION_CHUNK, messages.TOPIC_MODEL_STATUS, messages.TOPIC_ESTOP)
OUTBOUND = (messages.TOPIC_JOINT_STATE, messages.TOPIC_HEALTH.format(component="actuator"))
SAMPLE_S = 0.05


class ActuatorProcess:
    """Parent side: starts the actuator child and bridges ``bus`` to it."""

    def __init__(self, bus: Any, hz: float, packet_timeout_ms: float, arm: str = "emulator") -> None:
        self.bus = bus
        ours, theirs = socket.socketpair()
        self.child = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--fd", str(theirs.fileno()), "--hz", str(hz),
             "--packet-timeout-ms", str(packet_timeout_ms), "--arm", arm], pass_fds=[theirs.fileno()])
        theirs.close()
        self.conn = Connection(ours.detach())
        self._send_lock = threading.Lock()
        self.result: dict[str, Any] | None = None
        self._done = threading.Event()
        self._reader = threading.Thread(target=self._read, name="actuator-bridge", daemon=True)
        self._reader.start()
        for topic in INBOUND:
            bus.subscribe(topic, self._forward)

    def _forward(self, topic: str, payload: Any) -> None:
        try:
            with self._send_lock:
                self.conn.send((topic, payload))
        except OSError:
            pass  # the child is gone: the benchmark's waits notice it and say so

    def _read(self) -> None:
        try:
            while True:
                kind, *rest = self.conn.recv()
                if kind == "pub":
                    try:
                        self.bus.publish(*rest)
                    except Exception:  # a subscriber's bug must not stop the arm's joint states reaching the rest
                        logging.getLogger(__name__).exception("forwarding %s failed", rest[0])
                elif kind == "result":
                    self.result = rest[0]
                    return
        except (EOFError, OSError):
            return
        finally:
            self._done.set()

    def stop(self, timeout: float = 30.0) -> dict[str, Any] | None:
        """Stop the actuator (it holds, then turns torque off); the child's records, None if it died without them."""
        try:
            with self._send_lock:
                self.conn.send(("stop", None))
        except OSError:
            pass  # the child is gone already: its exit status says why
        self._done.wait(timeout)
        try:
            self.child.wait(timeout)
        except subprocess.TimeoutExpired:
            self.child.kill()
            self.child.wait()
        finally:
            self.conn.close()
        return self.result


# --- child side ----------------------------------------------------------------------------------


def _child(args: argparse.Namespace) -> None:
    from vla_edge.bus.memory import InMemoryBroker
    from vla_edge.components.actuator.component import ActuatorComponent
    from vla_edge.components.actuator.config import ActuatorConfig
    from vla_edge.components.base import load_config
    from vla_edge.motors.feetech.emulator import ArmEmulator

    with contextlib.ExitStack() as stack:
        servos = None
        if args.arm == "emulator":
            port = stack.enter_context(ArmEmulator(6)).device_path
        else:  # the tests' in-memory servo bus: no serial I/O at all, so the ticks show only scheduling
            sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
            from support.servos import FakeServoBus

            port, servos = "fake://servos", FakeServoBus()
        broker = InMemoryBroker()
        config = load_config(ActuatorConfig, {
            "serialPort": port, "controlHz": args.hz, "holdAfterS": 1.0, "torqueOffAfterS": 3600.0,
            "packetTimeoutMs": args.packet_timeout_ms})
        actuator = ActuatorComponent(broker.bus(name="actuator"), config, servos)
        _serve(Connection(args.fd), broker.bus(name="bridge"), actuator)


def _serve(conn: Connection, bridge: Any, actuator: Any) -> None:
    """Run ``actuator`` until the parent says stop, bridging ``bridge`` to ``conn``; then send back its records."""
    lock = threading.Lock()
    states: list[tuple[float, str | None]] = []
    samples: list[tuple[float, dict[str, int]]] = []

    def outbound(topic: str, payload: Any) -> None:
        if topic == messages.TOPIC_JOINT_STATE:
            states.append((time.monotonic(), payload.get("chunk_id")))
        with lock:
            conn.send(("pub", topic, payload))

    for topic in OUTBOUND:
        bridge.subscribe(topic, outbound)
    stop, sampling = threading.Event(), threading.Event()

    def sample() -> None:
        while not sampling.wait(SAMPLE_S):
            samples.append((time.monotonic(), actuator.counters.snapshot()))

    control = threading.Thread(target=actuator.run, args=(stop,), name="actuator", daemon=True)
    sampler = threading.Thread(target=sample, name="counter-sampler", daemon=True)
    control.start()
    sampler.start()
    try:
        while True:
            topic, payload = conn.recv()
            if topic == "stop":
                break
            bridge.publish(topic, payload)
    except EOFError:
        pass  # the parent went away: stop all the same
    finally:
        sampling.set()
        stop.set()
        control.join(timeout=20)
        actuator.close()
    with lock:
        conn.send(("result", {"states": states, "samples": samples, "counters": actuator.counters.snapshot()}))
    conn.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="the actuator of benchmarks/model_update.py (child process)")
    parser.add_argument("--fd", type=int, required=True, help="socket to the parent (inherited)")
    parser.add_argument("--hz", type=float, default=30.0)
    parser.add_argument("--arm", choices=["emulator", "fake"], default="emulator")
    parser.add_argument("--packet-timeout-ms", type=float, default=100.0)
    logging.basicConfig(level=logging.WARNING, format="actuator %(levelname)s %(name)s: %(message)s")
    _child(parser.parse_args(argv))


if __name__ == "__main__":
    main()
