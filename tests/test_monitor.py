from __future__ import annotations

from vla_edge import messages
from vla_edge.bus.memory import InMemoryBroker
from vla_edge.monitor import SuiteMonitor

NAMES = ["a", "b"]


def state(applied: int, latency: float | None = None) -> messages.JointState:
    return messages.JointState(t=1.0, names=NAMES, positions=[0.0, 0.0], actions_applied=applied, latency_ms=latency)


def test_summary_counts_what_crossed_the_bus(broker: InMemoryBroker) -> None:
    monitor = SuiteMonitor(broker.bus())
    monitor.start()
    publisher = broker.bus()

    def send(message: messages.Message) -> None:
        publisher.publish(*messages.encode(message))

    send(messages.ComponentHealth(t=1, component="camera", state="RUNNING", counters={"published.frame_ready": 90}))
    send(messages.ComponentHealth(t=1, component="actuator", state="RUNNING", counters={"rejected.malformed": 2}))
    for applied, latency in [(1, 100.0), (2, None), (3, 120.0), (1, 80.0), (2, None)]:  # actuator restarted at 1
        send(state(applied, latency))
    publisher.publish(messages.TOPIC_JOINT_STATE, b"garbage")
    summary = monitor.summary()
    assert summary["frames"] == 90
    assert summary["control_ticks"] == 5
    assert summary["actions_applied"] == 5
    assert summary["latency_samples"] == 3
    assert summary["latency_ms_p50"] == 100.0
    assert 100.0 < summary["latency_ms_p99"] <= 120.0
    assert summary["rejected"] == {"actuator.malformed": 2}
    assert monitor.counters.get("rejected.malformed") == 1
    assert monitor.components_running(["camera", "actuator"])
    assert not monitor.components_running(["camera", "inference"])
    assert "actions 5" in monitor.status_line()


def test_empty_summary_has_no_latency(broker: InMemoryBroker) -> None:
    summary = SuiteMonitor(broker.bus()).summary()
    assert summary["latency_ms_p50"] is None and summary["actions_applied"] == 0
