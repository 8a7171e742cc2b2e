"""Fixtures of the model-updater tests: tiny published models, a store serving v1, a fake inference component."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from support.model_dirs import published_model
from support.updater import FakeInference, Loaded, ManualClock, UpdaterHarness

from vla_edge.bus.memory import InMemoryBroker
from vla_edge.messages import ModelRef
from vla_edge.updater.manifest import ModelManifest
from vla_edge.updater.store import ModelStore


@dataclass
class Published:
    path: Path
    manifest: ModelManifest

    @property
    def ref(self) -> ModelRef:
        return self.manifest.ref


@pytest.fixture
def publish(tmp_path: Path) -> Callable[..., Published]:
    """``publish(version, **kwargs)``: a tiny model 'pick' of that version, manifest written beside its files."""

    def make(version: str, name: str = "pick", **kwargs: Any) -> Published:
        directory = tmp_path / "published" / f"{name}-{version}"
        kwargs.setdefault("weight_floats", 2000)
        kwargs.setdefault("seed", sum(map(ord, name + version)))
        return Published(directory, published_model(directory, name=name, version=version, **kwargs))

    return make


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
def v1(publish: Callable[..., Published], store_dir: Path) -> Published:
    """Version 1, installed in the store and recorded active."""
    model = publish("1")
    store = ModelStore(store_dir)
    store.activate(store.install(model.path, model.manifest).ref, "test setup")
    return model


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def fake(broker: InMemoryBroker, v1: Published, store_dir: Path) -> FakeInference:
    """An inference component serving v1 from the store."""
    installed = ModelStore(store_dir).get(v1.ref)
    assert installed is not None
    return FakeInference(broker, Loaded(v1.ref, str(installed.path), 100.0))


@pytest.fixture
def harness(broker: InMemoryBroker, store_dir: Path, clock: ManualClock,
            monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., UpdaterHarness]]:
    """``harness(**config)``: a running updater on ``store_dir`` (keys as in the recipe); stopped afterwards."""
    monkeypatch.setenv("AWS_IOT_THING_NAME", "arm-7")
    started: list[UpdaterHarness] = []

    def make(start: bool = True, component_args: dict[str, Any] | None = None, **config: Any) -> UpdaterHarness:
        configuration = {"storeDir": str(store_dir), "probationS": 0, "reportPeriodS": 3600, **config}
        made = UpdaterHarness(broker, configuration, clock, **(component_args or {}))
        started.append(made)
        return made.start() if start else made

    yield make
    for made in started:
        made.stop()
