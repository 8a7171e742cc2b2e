"""The container health check: a component's heartbeat file, read by ``python -m vla_edge.components.healthcheck``."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from vla_edge.bus.memory import InMemoryBroker
from vla_edge.components import healthcheck
from vla_edge.components.base import Component


class Beating(Component):
    name = "beating"

    def run(self, stop: threading.Event) -> None:  # pragma: no cover - not run
        pass


def test_a_component_writes_its_heartbeat_when_it_publishes_health(
    tmp_path: Path, broker: InMemoryBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "health.json"
    monkeypatch.setenv(healthcheck.HEALTH_FILE_ENV, str(path))
    component = Beating(broker.bus(), None)
    component.publish_health(force=True)
    assert json.loads(path.read_text())["state"] == "STARTING"
    component.state = "RUNNING"
    component.publish_health(force=True)
    record = json.loads(path.read_text())
    assert (record["component"], record["state"]) == ("beating", "RUNNING")
    assert healthcheck.check(path)[0]
    assert healthcheck.main(["--file", str(path)]) == 0
    assert list(tmp_path.iterdir()) == [path]  # no temporary files left


def test_without_the_variable_nothing_is_written(
    tmp_path: Path, broker: InMemoryBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(healthcheck.HEALTH_FILE_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    Beating(broker.bus(), None).publish_health(force=True)
    assert list(tmp_path.iterdir()) == []
    assert healthcheck.main([]) == 1


def test_an_unwritable_heartbeat_is_counted_not_fatal(
    tmp_path: Path, broker: InMemoryBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(healthcheck.HEALTH_FILE_ENV, str(tmp_path / "missing" / "health.json"))
    component = Beating(broker.bus(), None)
    component.publish_health(force=True)
    component.publish_health(force=True)
    assert component.counters.get("heartbeat_errors") == 2


@pytest.mark.parametrize(
    ("record", "age", "healthy", "why"),
    [
        ({"component": "inference", "state": "RUNNING"}, 1.0, True, "RUNNING"),
        ({"component": "inference", "state": "RUNNING"}, 31.0, False, "31 s old"),
        ({"component": "inference", "state": "ERRORED"}, 0.0, False, "ERRORED"),
        (None, 0.0, False, "no heartbeat"),
        ("garbage", 0.0, False, "unreadable"),
    ],
)
def test_check_reads_state_and_age(tmp_path: Path, record: object, age: float, healthy: bool, why: str) -> None:
    path = tmp_path / "health.json"
    if isinstance(record, dict):
        healthcheck.write_heartbeat(path, record["component"], record["state"], now=1000.0)
    elif record is not None:
        path.write_text(str(record))
    ok, reason = healthcheck.check(path, max_age_s=30.0, now=1000.0 + age)
    assert ok is healthy
    assert why in reason
