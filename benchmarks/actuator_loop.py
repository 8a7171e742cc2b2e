"""The actuator's control loop against the STS3215 emulator on a real pseudo-terminal.

For each control rate (30, 60 and 100 Hz by default) the real
:class:`~vla_edge.components.actuator.component.ActuatorComponent` runs on an in-memory
bus (``InMemoryBroker``) with a real :class:`~vla_edge.motors.feetech.bus.FeetechBus`
(the feetech-servo-sdk over pyserial) talking to :class:`~vla_edge.motors.feetech.emulator.ArmEmulator`
in a process of its own (:class:`~vla_edge.motors.feetech.emulator.remote.RemoteArmEmulator`), so its
replies do not wait for this process's GIL.
A feeder thread publishes action chunks (a slow sine on every joint, on the rate's time grid)
so every tick writes goals and reads positions, as when a policy drives the arm.

Measured per rate:

* tick period and jitter: intervals between consecutive ``JointState`` publications
  (published at the end of each tick) and ``|interval - period|``, p50/p99/max;
* servo I/O per tick: wall time of ``sync_write_goals`` + the following
  ``sync_read_positions`` (the FeetechBus calls, timed around them), p50/p99;
* e-stop latency: publish ``EStop(engaged=True)``, poll the emulator until every servo
  reports torque off; reset, wait for torque to come back with the next chunk, repeat.

Baseline in the same run, same emulator kind, same rate: a bare loop of
``sync_write_goals`` + ``sync_read_positions`` on a ``FeetechBus`` with a monotonic
deadline sleep (no component, no schedule, no messages), and raw ``set_torque(False)``
until the emulator reports torque off.

    python benchmarks/actuator_loop.py [--seconds 60] [--rates 30 60 100] [--estops 20] [--json]
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import math
import platform
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from vla_edge import messages
from vla_edge.bus.memory import InMemoryBroker
from vla_edge.components.actuator.component import ActuatorComponent
from vla_edge.components.actuator.config import ActuatorConfig
from vla_edge.components.actuator.units import degrees_to_ticks
from vla_edge.components.base import load_config
from vla_edge.errors import ServoBusError
from vla_edge.motors.base import ServoBusConfig
from vla_edge.motors.feetech.bus import FeetechBus
from vla_edge.motors.feetech.emulator.remote import RemoteArmEmulator

PACKET_TIMEOUT_MS = 100.0
"""The emulator shares the machine's two cores with the loop; a real bus uses 50 ms."""
AMPLITUDE_DEG = 10.0
MOTION_HZ = 0.25
CHUNK_S = 1.0
CHUNK_EVERY_S = 0.2
MODEL = messages.ModelRef(name="bench", version="1", sha256="0" * 64)


def percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, math.ceil(q / 100.0 * len(ordered)) - 1))
    return ordered[index]


def summary_ms(values_s: Sequence[float]) -> dict[str, float | int | None]:
    ms = [v * 1000.0 for v in values_s]
    return {
        "n": len(ms),
        "p50_ms": percentile(ms, 50),
        "p99_ms": percentile(ms, 99),
        "max_ms": max(ms) if ms else None,
    }


def tick_figures(times: list[float], seconds: float, period: float) -> dict[str, Any]:
    """Ticks, rate, period and jitter (|interval - period|) from the times the ticks happened."""
    intervals = [b - a for a, b in itertools.pairwise(times)]
    return {
        "ticks": len(times),
        "ticks_per_s": len(times) / seconds,
        "period_ms": summary_ms(intervals),
        "jitter_ms": summary_ms([abs(i - period) for i in intervals]),
    }


def wave(t: float, joints: int) -> list[float]:
    return [AMPLITUDE_DEG * math.sin(2 * math.pi * MOTION_HZ * t + j) for j in range(joints)]


class TimedFeetechBus(FeetechBus):
    """FeetechBus that times each goal write and the position read that follows it."""

    def __init__(self, config: ServoBusConfig) -> None:
        super().__init__(config)
        self.reads: list[float] = []
        self.writes: list[float] = []
        self.pairs: list[float] = []
        self._pending_write: float | None = None
        self.recording = False

    def sync_write_goals(self, goals: Mapping[int, int]) -> None:
        started = time.perf_counter()
        super().sync_write_goals(goals)
        elapsed = time.perf_counter() - started
        if self.recording:
            self.writes.append(elapsed)
            self._pending_write = elapsed

    def sync_read_positions(self) -> dict[int, int]:
        started = time.perf_counter()
        result = super().sync_read_positions()
        elapsed = time.perf_counter() - started
        if self.recording:
            self.reads.append(elapsed)
            if self._pending_write is not None:
                self.pairs.append(self._pending_write + elapsed)
        self._pending_write = None
        return result


def actuator_config(port: str, hz: float) -> ActuatorConfig:
    return load_config(
        ActuatorConfig,
        {
            "serialPort": port,
            "controlHz": hz,
            "maxActionLagS": max(0.05, 1.0 / hz),
            "tickPhaseS": min(0.004, 0.25 / hz),
            "torqueOffAfterS": 3600.0,
            "holdAfterS": 1.0,
            "packetTimeoutMs": PACKET_TIMEOUT_MS,
        },
    )


def wait_for(condition: Callable[[], bool], timeout: float, poll_s: float = 0.0002) -> float | None:
    """Seconds until ``condition()`` held, or None on timeout."""
    started = time.perf_counter()
    deadline = started + timeout
    while True:
        if condition():
            return time.perf_counter() - started
        if time.perf_counter() > deadline:
            return None
        time.sleep(poll_s)


def run_component(hz: float, seconds: float, estops: int) -> dict[str, Any]:
    with RemoteArmEmulator(6) as emulator:
        config = actuator_config(emulator.device_path, hz)
        servos = TimedFeetechBus(
            ServoBusConfig(port=config.serial_port, motor_ids=config.motor_ids, baudrate=config.baudrate,
                           packet_timeout_ms=config.packet_timeout_ms)
        )  # fmt: skip
        broker = InMemoryBroker()
        component_bus, bench_bus = broker.bus(), broker.bus()
        component = ActuatorComponent(component_bus, config, servos)
        states: list[float] = []
        recording = threading.Event()

        def on_state(_topic: str, _payload: Any) -> None:
            if recording.is_set():
                states.append(time.perf_counter())

        bench_bus.subscribe(messages.TOPIC_JOINT_STATE, on_state)
        stop, stop_feeder = threading.Event(), threading.Event()
        dt = config.tick_s

        def feed() -> None:
            while not stop_feeder.is_set():
                now = time.time()
                t_start = (math.floor(now / dt) + 1) * dt
                steps = round(CHUNK_S / dt)
                chunk = messages.ActionChunk(
                    model=MODEL, t_created=now, t_observation=now, t_start=t_start, dt=dt,
                    names=config.names, actions=[wave(t_start + i * dt, len(config.names)) for i in range(steps)],
                )  # fmt: skip
                topic, payload = messages.encode(chunk)
                bench_bus.publish(topic, payload)
                stop_feeder.wait(CHUNK_EVERY_S)

        control = threading.Thread(target=component.run, args=(stop,), name="actuator", daemon=True)
        feeder = threading.Thread(target=feed, name="feeder", daemon=True)
        control.start()
        try:
            if wait_for(lambda: all(emulator.torque_enabled().values()), 10.0, 0.01) is None:
                raise RuntimeError(f"actuator did not energise the emulated arm at {hz} Hz")
            feeder.start()
            time.sleep(0.5)  # settle into the chunk stream
            servos.recording = True
            recording.set()
            time.sleep(seconds)
            recording.clear()
            servos.recording = False
            counters = component.counters.snapshot()
            latencies: list[float] = []
            failures = 0
            not_armed = 0  # torque did not come back on within 5 s (a fault stop under way): no e-stop sent
            for _ in range(estops):
                if wait_for(lambda: all(emulator.torque_enabled().values()), 5.0, 0.001) is None:
                    not_armed += 1
                    continue
                time.sleep(0.05 + (len(latencies) % 7) * dt / 7)  # land at different points of the tick
                topic, payload = messages.encode(messages.EStop(t=time.time(), engaged=True, source="bench"))
                started = time.perf_counter()
                bench_bus.publish(topic, payload)
                if wait_for(lambda: not any(emulator.torque_enabled().values()), 5.0) is None:
                    failures += 1
                else:
                    latencies.append(time.perf_counter() - started)
                topic, payload = messages.encode(messages.EStop(t=time.time(), engaged=False, source="bench"))
                bench_bus.publish(topic, payload)
        finally:
            stop_feeder.set()
            if feeder.is_alive():
                feeder.join(timeout=5)
            stop.set()
            control.join(timeout=10)
            component.close()
    return {
        **tick_figures(states, seconds, dt),
        "servo_io_ms": summary_ms(servos.pairs),
        "sync_read_ms": summary_ms(servos.reads),
        "sync_write_ms": summary_ms(servos.writes),
        "estop_to_torque_off_ms": summary_ms(latencies),
        "estop_failures": failures,
        "estop_not_armed": not_armed,
        "counters": {k: v for k, v in counters.items() if not k.startswith(("published.", "received."))},
    }


def run_baseline(hz: float, seconds: float, estops: int) -> dict[str, Any]:
    with RemoteArmEmulator(6) as emulator:
        ids = (1, 2, 3, 4, 5, 6)
        bus = FeetechBus(ServoBusConfig(port=emulator.device_path, motor_ids=ids, packet_timeout_ms=PACKET_TIMEOUT_MS))
        bus.connect()
        try:
            period = 1.0 / hz
            bus.sync_write_goals(bus.sync_read_positions())
            bus.set_torque(True)
            ends: list[float] = []
            pairs: list[float] = []
            bus_errors = 0  # a bare loop does not retry: a lost status packet is a failed tick
            deadline = time.monotonic()
            finish = time.perf_counter() + seconds
            while time.perf_counter() < finish:
                deadline += period
                goals = wave(time.time(), len(ids))
                started = time.perf_counter()
                try:
                    bus.sync_write_goals({i: degrees_to_ticks(g) for i, g in zip(ids, goals, strict=True)})
                    bus.sync_read_positions()
                except ServoBusError:
                    bus_errors += 1
                    if not bus.is_connected:
                        bus.connect()
                ended = time.perf_counter()
                pairs.append(ended - started)
                ends.append(ended)
                time.sleep(max(0.0, deadline - time.monotonic()))
            latencies = []
            for _ in range(estops):
                try:
                    bus.set_torque(True)
                    started = time.perf_counter()
                    bus.set_torque(False)
                except ServoBusError:
                    bus_errors += 1  # the emulator missed a reply (a loaded machine); the next e-stop tries again
                    continue
                elapsed = wait_for(lambda: not any(emulator.torque_enabled().values()), 5.0)
                if elapsed is not None:
                    latencies.append(time.perf_counter() - started)
        finally:
            bus.disconnect()
    return {
        **tick_figures(ends, seconds, period),
        "servo_io_ms": summary_ms(pairs),
        "set_torque_off_ms": summary_ms(latencies),
        "bus_errors": bus_errors,
    }


def fmt(value: Any) -> str:
    return "-" if value is None else f"{value:.2f}"


def render(results: dict[str, Any]) -> str:
    lines = [
        (f"actuator loop vs STS3215 emulator on a pty: {results['seconds']:.0f} s per rate and mode, "
        f"{results['estops']} e-stops per rate ({results['machine']})"),
        "",
        (f"{'rate':>6}  {'mode':<9} {'ticks/s':>8}  {'period p50/p99':>15}  {'jitter p50/p99/max':>20}  "
        f"{'servo I/O p50/p99':>18}  {'torque-off p50/p99/max':>23}"),
    ]
    for rate in results["rates"]:
        for mode in ("component", "baseline"):
            r = rate[mode]
            off = r.get("estop_to_torque_off_ms") or r.get("set_torque_off_ms")
            lines.append(
                f"{rate['hz']:>4.0f}Hz  {mode:<9} {r['ticks_per_s']:>8.1f}  "
                f"{fmt(r['period_ms']['p50_ms']):>7}/{fmt(r['period_ms']['p99_ms']):<7}  "
                f"{fmt(r['jitter_ms']['p50_ms']):>6}/{fmt(r['jitter_ms']['p99_ms'])}/{fmt(r['jitter_ms']['max_ms']):<6}  "
                f"{fmt(r['servo_io_ms']['p50_ms']):>8}/{fmt(r['servo_io_ms']['p99_ms']):<8}  "
                f"{fmt(off['p50_ms']):>7}/{fmt(off['p99_ms'])}/{fmt(off['max_ms']):<7}"
            )
    lines += [
        "",
        "ms throughout. component: ActuatorComponent (InMemoryBroker) driven by action chunks; period/jitter from",
        "JointState publish times; servo I/O = sync_write_goals + sync_read_positions in one tick; torque-off = EStop",
        "publish until the emulator reports torque off on all 6 servos. baseline: bare FeetechBus write+read loop at",
        "the same rate; torque-off = raw set_torque(False) until the emulator reports it.",
    ]
    for rate in results["rates"]:
        c = rate["component"]
        if c["estop_failures"] or any(k.startswith(("bus_errors", "tick_overruns", "actions_dropped")) for k in c["counters"]):
            lines.append(f"{rate['hz']:.0f} Hz component counters: {c['counters']}; e-stop failures {c['estop_failures']}, "
                         f"e-stops not tried (torque was off) {c['estop_not_armed']}")
        if rate["baseline"]["bus_errors"]:
            lines.append(f"{rate['hz']:.0f} Hz baseline: {rate['baseline']['bus_errors']} ticks lost a transaction (no retries)")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="measured seconds per rate and mode (default 60)")
    parser.add_argument("--rates", type=float, nargs="+", default=[30.0, 60.0, 100.0], help="control rates in Hz")
    parser.add_argument("--estops", type=int, default=20, help="e-stops per rate (default 20)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("vla_edge.actuator").setLevel(logging.CRITICAL)  # the e-stops are deliberate
    results: dict[str, Any] = {
        "seconds": args.seconds,
        "estops": args.estops,
        "machine": f"{platform.machine()}, {platform.python_implementation()} {platform.python_version()}",
        "rates": [],
    }
    for hz in args.rates:
        results["rates"].append(
            {"hz": hz, "component": run_component(hz, args.seconds, args.estops),
             "baseline": run_baseline(hz, args.seconds, args.estops)}
        )  # fmt: skip
    print(json.dumps(results, indent=2) if args.json else render(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
