from __future__ import annotations

import json
from pathlib import Path

from vla_edge import messages
from vla_edge.bus.memory import InMemoryBroker
from vla_edge.components.model_updater.component import ModelUpdaterComponent
from vla_edge.components.model_updater.config import ModelUpdaterConfig
from vla_edge.models import directory_digest, write_identity


def make_model(path: Path, weights: bytes = b"weights") -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps({"type": "act"}))
    (path / "model.safetensors").write_bytes(weights)
    write_identity(path, "pick-cube", "1.2.0")
    return path


def test_reports_active_model_and_notices_changes(broker: InMemoryBroker, tmp_path: Path) -> None:
    model = make_model(tmp_path / "m")
    statuses: list[messages.ModelStatus] = []
    broker.bus().subscribe(messages.TOPIC_MODEL_STATUS, lambda t, p: statuses.append(messages.decode(t, p)))
    component = ModelUpdaterComponent(broker.bus(), ModelUpdaterConfig(model_path=str(model)))
    status = component.refresh()
    assert status.state == "active" and status.model is not None
    assert (status.model.name, status.model.version) == ("pick-cube", "1.2.0")
    assert status.model.sha256 == directory_digest(model)
    assert len(statuses) == 1
    component.refresh()
    assert len(statuses) == 1, "an unchanged model is not re-announced"
    (model / "model.safetensors").write_bytes(b"other weights, other size")
    changed = component.refresh()
    assert changed.model is not None and changed.model.sha256 != status.model.sha256
    assert len(statuses) == 2


def test_missing_model_reports_none_with_reason(broker: InMemoryBroker, tmp_path: Path) -> None:
    component = ModelUpdaterComponent(broker.bus(), ModelUpdaterConfig(model_path=str(tmp_path / "nothing")))
    status = component.refresh()
    assert status.state == "none" and status.model is None
    assert "does not exist" in status.detail or "not a LeRobot model directory" in status.detail


def test_default_path_is_the_demo_policy_in_the_cache(broker: InMemoryBroker, cache_dir: Path) -> None:
    component = ModelUpdaterComponent(broker.bus(), ModelUpdaterConfig())
    assert component.model_path == cache_dir / "models" / "demo-act-untrained"
