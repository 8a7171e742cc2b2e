"""The model store: install only what verifies, an atomic active record, rollback, prune, concurrency."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from support.model_dirs import published_model

from vla_edge.errors import ModelUpdateError, VerificationError
from vla_edge.models import directory_digest, read_model_ref
from vla_edge.updater import _fs
from vla_edge.updater.manifest import MANIFEST_FILE, ModelManifest
from vla_edge.updater.store import ModelStore


def _models(tmp_path: Path, count: int, name: str = "tiny") -> list[tuple[Path, ModelManifest]]:
    models = []
    for index in range(count):
        directory = tmp_path / "published" / f"{name}-{index}"
        models.append((directory, published_model(directory, name=name, version=f"1.{index}", seed=index,
                                                  weight_floats=2000)))
    return models


@pytest.fixture
def store(tmp_path: Path) -> ModelStore:
    return ModelStore(tmp_path / "store")


def test_install_verifies_and_places_the_model_beside_its_manifest(store: ModelStore, tmp_path: Path) -> None:
    (source, manifest), = _models(tmp_path, 1)
    before = sorted(p.name for p in source.rglob("*"))

    model = store.install(source, manifest)

    assert model.path == store.root / "models" / "tiny" / f"1.0-{manifest.sha256[:12]}"
    assert model.manifest_path == model.path.with_name(model.path.name + ".manifest.json")
    assert model.manifest() == manifest
    assert not (model.path / MANIFEST_FILE).exists()
    assert directory_digest(model.path) == manifest.sha256
    assert read_model_ref(model.path) == manifest.ref
    assert sorted(p.name for p in source.rglob("*")) == before  # a source outside staging is copied, not moved
    assert store.record().staged == [manifest.ref]
    assert store.active() is None
    assert store.install(source, manifest) == model  # installing again changes nothing


def test_a_staged_download_that_does_not_verify_never_becomes_a_model(store: ModelStore, tmp_path: Path) -> None:
    (good_source, good), (bad_source, bad) = _models(tmp_path, 2)
    store.activate(store.install(good_source, good).ref)
    record = store.record()
    staged = store.staging_dir(bad)
    staged.parent.mkdir(parents=True, exist_ok=True)
    os.rename(bad_source, staged)
    weights = staged / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1] + b"\x00")

    with pytest.raises(VerificationError, match="model.safetensors"):
        store.install(staged, bad)

    assert [m.ref for m in store.installed()] == [good.ref]
    assert store.record() == record
    assert not staged.exists()  # deleted: a later fetch must not trust its files again
    with pytest.raises(ModelUpdateError, match="not installed"):
        store.activate(bad.ref)


def test_activate_previous_and_rollback_survive_a_new_store(store: ModelStore, tmp_path: Path) -> None:
    refs = [store.install(source, manifest).ref for source, manifest in _models(tmp_path, 3)]
    for ref in refs:
        store.activate(ref)
    assert [m.ref for m in store.previous()] == [refs[1], refs[0]]

    back = store.rollback("validation failed: actions outside the joint limits")

    assert back.ref == refs[1]
    reopened = ModelStore(store.root)
    record = reopened.record()
    assert reopened.active() is not None and reopened.active().ref == refs[1]
    assert (record.event, record.reason) == ("rollback", "validation failed: actions outside the joint limits")
    assert record.previous == [refs[0]] and record.rolled_back == [refs[2]]
    assert reopened.rollback("again").ref == refs[0]
    with pytest.raises(ModelUpdateError, match="no previous model"):
        reopened.rollback("once more")
    assert reopened.active().ref == refs[0]


def test_rollback_skips_previous_models_no_longer_on_disk(store: ModelStore, tmp_path: Path) -> None:
    refs = [store.install(source, manifest).ref for source, manifest in _models(tmp_path, 3)]
    for ref in refs:
        store.activate(ref)
    store.manifest_path(refs[1]).unlink()  # e.g. removed by hand
    assert store.rollback("bad").ref == refs[0]


def test_rollback_with_nothing_active(store: ModelStore) -> None:
    with pytest.raises(ModelUpdateError, match="no active model"):
        store.rollback("why")


def test_prune_keeps_the_active_n_previous_and_staged_models(store: ModelStore, tmp_path: Path) -> None:
    refs = [store.install(source, manifest).ref for source, manifest in _models(tmp_path, 5)]
    for ref in refs[:4]:
        store.activate(ref)  # refs[4] stays installed but not activated (being validated)
    leftover = store.models_dir / "tiny" / "9.9-0123456789ab"  # an interrupted removal: no manifest
    leftover.mkdir()

    removed = store.prune(keep=1)

    assert sorted(removed, key=lambda r: r.version) == [refs[0], refs[1]]
    assert sorted(m.ref.version for m in store.installed()) == ["1.2", "1.3", "1.4"]
    assert not store.model_path(refs[0]).exists() and not store.manifest_path(refs[0]).exists()
    assert not leftover.exists()
    record = store.record()
    assert (record.active, record.previous, record.staged) == (refs[3], [refs[2]], [refs[4]])
    assert store.prune(keep=0) == [refs[2]]
    assert store.active().ref == refs[3]


def test_discard_removes_a_staged_model_but_never_the_active_one(store: ModelStore, tmp_path: Path) -> None:
    (a_source, a), (b_source, b) = _models(tmp_path, 2)
    store.activate(store.install(a_source, a).ref)
    store.install(b_source, b)
    store.discard(b.ref, "failed validation")
    assert store.get(b.ref) is None and store.record().staged == []
    with pytest.raises(ModelUpdateError, match="is the active model"):
        store.discard(a.ref)


class SimulatedCrash(BaseException):
    """Stands for the process dying: nothing after it runs."""


def test_record_survives_a_crash_between_temp_write_and_replace(store: ModelStore, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    (a_source, a), (b_source, b) = _models(tmp_path, 2)
    store.activate(store.install(a_source, a).ref)
    store.install(b_source, b)
    real_replace = os.replace

    def crash_on_record(src: str, dst: str) -> None:
        if Path(dst).name == "active.json":
            raise SimulatedCrash
        real_replace(src, dst)

    monkeypatch.setattr(_fs.os, "replace", crash_on_record)
    with pytest.raises(SimulatedCrash):
        store.activate(b.ref)
    monkeypatch.setattr(_fs.os, "replace", real_replace)
    # what a real crash leaves behind: the flushed temporary file of the new record, never renamed
    (store.root / ".active.json.crash.tmp").write_text('{"format": 1, "active": null}')

    reopened = ModelStore(store.root)
    assert reopened.active().ref == a.ref
    assert reopened.record_problem is None
    assert reopened.activate(b.ref).ref == b.ref
    assert ModelStore(store.root).active().ref == b.ref


def test_a_corrupt_record_falls_back_to_the_last_good_copy(store: ModelStore, tmp_path: Path,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    (a_source, a), (b_source, b), (c_source, c) = _models(tmp_path, 3)
    for source, manifest in ((a_source, a), (b_source, b)):
        store.activate(store.install(source, manifest).ref)
    record_file = store.root / "active.json"
    record_file.write_bytes(b'{"format": 1, "active": {"name": "tiny"')  # torn write

    reopened = ModelStore(store.root)
    assert reopened.active().ref == a.ref  # active.json.prev: the record before the last change
    assert "corrupt" in reopened.record_problem
    assert "last good copy" in caplog.text

    reopened.activate(store.install(c_source, c).ref)
    assert reopened.record_problem is None
    assert json.loads(record_file.read_text())["active"]["version"] == c.version
    assert json.loads((store.root / "active.json.prev").read_text())["active"]["version"] == a.version


@pytest.mark.parametrize("garbage", [b"\x00\x01", b"[]", b'{"format": 1, "active": {"name": "x"}}', b'{"format": 9}'])
def test_both_records_unreadable_is_a_clear_error(store: ModelStore, garbage: bytes) -> None:
    (store.root / "active.json").write_bytes(garbage)
    (store.root / "active.json.prev").write_bytes(garbage)
    with pytest.raises(ModelUpdateError, match="restore .* or delete both files"):
        ModelStore(store.root).active()


def test_two_stores_on_one_root_see_and_serialise_each_other(tmp_path: Path) -> None:
    first, second = ModelStore(tmp_path / "store"), ModelStore(tmp_path / "store")
    models = _models(tmp_path, 8)
    refs = [first.install(source, manifest).ref for source, manifest in models]
    first.activate(refs[0])
    assert second.active().ref == refs[0]

    def activate_all(store: ModelStore, mine: list) -> None:
        for ref in mine:
            store.activate(ref)

    threads = [threading.Thread(target=activate_all, args=(s, refs[i::2])) for i, s in enumerate((first, second))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    record = first.record()
    assert {record.active, *record.previous} == set(refs)  # no read-modify-write lost an activation
    assert len(record.previous) == 7 and record.staged == []


_WORKER = """
import sys
from pathlib import Path
from vla_edge.updater import ModelStore, read_manifest
store = ModelStore(Path(sys.argv[1]))
for directory in sys.argv[2:]:
    manifest = read_manifest(Path(directory))
    store.activate(store.install(Path(directory), manifest).ref)
assert "torch" not in sys.modules and "lerobot" not in sys.modules
"""


def test_two_processes_on_one_root(tmp_path: Path) -> None:
    models = _models(tmp_path, 8)
    root = tmp_path / "store"
    ModelStore(root)
    workers = [
        subprocess.Popen([sys.executable, "-c", _WORKER, str(root), *(str(d) for d, _ in models[i::2])])
        for i in range(2)
    ]
    assert [worker.wait(timeout=120) for worker in workers] == [0, 0]

    store = ModelStore(root)
    record = store.record()
    assert {record.active, *record.previous} == {manifest.ref for _, manifest in models}
    assert len(store.installed()) == 8 and record.staged == []


def test_one_download_per_model_at_a_time(store: ModelStore, tmp_path: Path) -> None:
    (_, manifest), = _models(tmp_path, 1)
    with store.stage(manifest) as staging:
        assert staging == store.staging_dir(manifest) and staging.is_dir()
        with pytest.raises(ModelUpdateError, match="already in progress"), store.stage(manifest):
            pass
    with store.stage(manifest):
        pass
    store.discard_staging(manifest)
    assert not store.staging_dir(manifest).exists()
