"""The quick parts of staging: memory arithmetic, identity, refusals that need no validator."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.inference import Harness, Rings, command, joints
from support.policy import ACT_CAMERAS

from vla_edge import messages
from vla_edge.bus.memory import InMemoryBroker
from vla_edge.components.inference.staging import (
    LoadedModel,
    available_memory_mb,
    estimate_memory_mb,
    memory_plan,
)
from vla_edge.models import read_model_ref
from vla_edge.policies import LoadedPolicy
from vla_edge.policies.validate import ModelRejected, ValidationReport

FIVE = ["a", "b", "c", "d", "e"]
REF = messages.ModelRef(name="next", version="2", sha256="b" * 64)


@pytest.fixture
def serving(act_v1_policy: LoadedPolicy, v1_ref: messages.ModelRef) -> LoadedModel:
    return LoadedModel(v1_ref, act_v1_policy, memory_mb=300.0)


@pytest.mark.parametrize(
    ("free", "allow_unload", "expected"),
    [
        (2000.0, False, True),  # 1000 + 256 margin fit beside the serving model
        (1000.0, True, False),  # not beside, but after unloading its 300 MB
    ],
)
def test_memory_plan_beside_or_after_unloading(serving: LoadedModel, free: float, allow_unload: bool,
                                              expected: bool) -> None:
    assert memory_plan(REF, 1000.0, free, 256.0, serving, allow_unload) is expected


@pytest.mark.parametrize(
    ("free", "allow_unload", "says"),
    [
        (1000.0, False, "retry with allow_unload"),
        (500.0, True, "frees only about 300 MB"),
    ],
)
def test_memory_plan_refusals_say_what_to_do(serving: LoadedModel, free: float, allow_unload: bool, says: str) -> None:
    with pytest.raises(ModelRejected, match=says) as raised:
        memory_plan(REF, 1000.0, free, 256.0, serving, allow_unload)
    assert raised.value.reason == "insufficient_memory"


def test_without_a_serving_model_nothing_is_beside() -> None:
    assert memory_plan(REF, 100.0, 1000.0, 0.0, None, False) is False
    with pytest.raises(ModelRejected, match="Free memory on the device"):
        memory_plan(REF, 2000.0, 1000.0, 0.0, None, True)


def test_memory_estimate_comes_from_the_weight_files(tmp_path: Path) -> None:
    (tmp_path / "model.safetensors").write_bytes(b"\0" * (10 * 2**20))
    (tmp_path / "config.json").write_text("{}" * 1000)  # not weights
    assert estimate_memory_mb(tmp_path) == pytest.approx(10 * 1.2 + 64)


def test_free_memory_on_cpu_is_memavailable() -> None:
    text = Path("/proc/meminfo").read_text()
    (line,) = [line for line in text.splitlines() if line.startswith("MemAvailable:")]
    assert available_memory_mb("cpu") == pytest.approx(int(line.split()[1]) / 1024.0, rel=0.2)


# --- refusals through the component (no validator process) -------------------------------------


@pytest.fixture
def harness(broker: InMemoryBroker, act_v1_policy: LoadedPolicy, tmp_path: Path) -> Iterator[Any]:
    rings = Rings(tmp_path / "frames")
    made: list[Harness] = []

    def make(**switching: Any) -> Harness:
        h = Harness(broker, act_v1_policy, rings.directory, switching=switching, cameras=list(ACT_CAMERAS),
                    jointNames=FIVE, maxObservationAgeS=30.0)
        h.send(*(rings.frame(camera=camera, shape=(48, 64)) for camera in ACT_CAMERAS), joints(FIVE))
        made.append(h)
        return h

    yield make
    for h in made:
        h.component.close()
    rings.close()


def test_a_path_holding_another_model_is_refused_before_validation(
    harness: Any, act_v1_dir: Path, v2_ref: messages.ModelRef
) -> None:
    validated: list[Path] = []
    h = harness(validate=lambda path, *a, **k: validated.append(path) or ValidationReport(ok=True))
    stage = command("stage", v2_ref, act_v1_dir)  # v2's identity, v1's files
    h.send(stage)
    h.drive_until(lambda: h.report("failed", stage.request_id))
    failed = h.report("failed", stage.request_id)
    assert failed.reason == "identity_mismatch" and "Download and verify the model again" in failed.detail
    assert validated == []


def test_commands_that_cannot_go_ahead_are_refused_with_their_reason(
    harness: Any, act_v2_dir: Path, act_dir: Path, v2_ref: messages.ModelRef
) -> None:
    release = threading.Event()

    def slow_validator(*args: Any, **kwargs: Any) -> ValidationReport:
        release.wait(60)
        return ValidationReport(ok=True)

    h = harness(validate=slow_validator)
    no_path = command("activate", v2_ref)
    h.send(no_path)
    assert h.report("failed", no_path.request_id).reason == "bad_command"
    stage = command("stage", v2_ref, act_v2_dir)
    h.send(stage)
    discard = command("discard", v2_ref)
    h.send(discard)  # while it is being staged
    assert h.report("failed", discard.request_id).reason == "busy"
    release.set()
    h.drive_until(lambda: h.report("staged", stage.request_id) or h.report("failed", stage.request_id))
    assert h.report("staged", stage.request_id) is not None
    third = command("stage", read_model_ref(act_dir), act_dir)
    h.send(third)
    refused = h.report("failed", third.request_id)
    assert refused.reason == "slot_occupied" and "discard it first" in refused.detail
    again = command("stage", v2_ref, act_v2_dir)
    h.send(again)
    assert h.report("staged", again.request_id).detail == "already loaded"
