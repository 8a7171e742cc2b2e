"""Rollouts from S3 against moto's server over loopback HTTP, including a download cut mid-way that resumes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from support import wait_for
from support.s3 import REGION, CuttingProxy, MotoS3, s3_client, upload_directory
from support.updater import FakeInference, UpdaterHarness

from vla_edge.components.model_updater.config import ModelSpec
from vla_edge.components.model_updater.sources import ModelSources
from vla_edge.updater.manifest import ModelManifest
from vla_edge.updater.store import ModelStore

from .conftest import Published

PREFIX = "models/pick/2"


@pytest.fixture
def credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The default chain finds these (environment), and no real profile of this machine."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_CONTAINER_CREDENTIALS_FULL_URI"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))


def s3_model(bucket: str, endpoint_url: str) -> dict[str, Any]:
    return {"source": "s3", "bucket": bucket, "prefix": PREFIX, "region": REGION, "endpointUrl": endpoint_url}


def test_rollout_from_s3_with_the_default_credential_chain(credentials: None, moto_s3: MotoS3, bucket: str,
                                                           fake: FakeInference, v1: Published,
                                                           publish: Callable[..., Published],
                                                           harness: Callable[..., UpdaterHarness],
                                                           store_dir: Path) -> None:
    v2 = publish("2", weight_floats=100_000)
    upload_directory(moto_s3.client(), bucket, PREFIX, v2.path)
    updater = harness(model=s3_model(bucket, moto_s3.endpoint_url))
    updater.wait_status("active", v2.ref)
    assert updater.states() == ["active", "staging", "switching", "active"]
    assert fake.serving is not None and fake.serving.ref == v2.ref
    assert ModelStore(store_dir).record().active == v2.ref
    wait_for(lambda: updater.component.counters.get("rollouts.succeeded") == 1)
    assert updater.component.counters.get("downloads.bytes") == v2.manifest.total_bytes
    assert (updater.component.metrics()["download_mbps"] or 0) > 0


def test_a_missing_manifest_fails_with_what_to_check(credentials: None, moto_s3: MotoS3, bucket: str,
                                                     fake: FakeInference, v1: Published,
                                                     harness: Callable[..., UpdaterHarness]) -> None:
    updater = harness(model=s3_model(bucket, moto_s3.endpoint_url))
    failed = updater.wait_status("failed")
    assert "download_failed" in failed.detail and "vla_edge_manifest.json" in failed.detail
    assert failed.model == v1.ref and failed.next_model is None
    assert updater.component.counters.get("rollouts.started") == 0


def test_a_download_cut_mid_way_resumes_after_a_restart(moto_s3: MotoS3, bucket: str, fake: FakeInference,
                                                        v1: Published, publish: Callable[..., Published],
                                                        harness: Callable[..., UpdaterHarness],
                                                        store_dir: Path) -> None:
    v2 = publish("2", weight_floats=300_000)  # about 1.2 MB of weights
    upload_directory(moto_s3.client(), bucket, PREFIX, v2.path)
    proxy = CuttingProxy(moto_s3.address)
    try:
        def sources() -> ModelSources:
            return ModelSources(lambda spec: s3_client(spec.endpoint_url), max_attempts=2, sleep=lambda _s: None)

        proxy.cut_after(600 * 1000, then_down=True)  # the link drops mid-body and stays down
        first = harness(model=s3_model(bucket, proxy.endpoint_url), component_args={"sources": sources()})
        failed = first.wait_status("failed")
        assert "download_failed" in failed.detail and "resumes" in failed.detail
        part = ModelStore(store_dir).staging_dir(v2.manifest) / "model.safetensors.part"
        kept = part.stat().st_size
        size = v2.manifest.files["model.safetensors"].size
        assert 0 < kept < size
        assert ModelStore(store_dir).record().active == v1.ref and fake.serving.ref == v1.ref  # type: ignore[union-attr]
        first.stop()

        proxy.clear()
        proxy.up()
        again = harness(model=s3_model(bucket, proxy.endpoint_url), component_args={"sources": sources()})
        again.wait_status("active", v2.ref)
        ranges = proxy.ranges("/model.safetensors")
        assert ranges[0][0] == kept and ranges[-1][1] == size - 1  # resumed at the part's length
        assert 0 < again.component.counters.get("downloads.bytes") < v2.manifest.total_bytes
    finally:
        proxy.stop()


class RecordingSources(ModelSources):
    def __init__(self) -> None:
        super().__init__()
        self.caps: list[float | None] = []

    def fetch(self, spec: ModelSpec, manifest: ModelManifest, store: ModelStore, progress: Any = None,
              max_bytes_per_s: float | None = None) -> Any:
        self.caps.append(max_bytes_per_s)
        return super().fetch(spec, manifest, store, progress, max_bytes_per_s)


def test_the_bandwidth_cap_reaches_the_transfer(fake: FakeInference, v1: Published,
                                                publish: Callable[..., Published],
                                                harness: Callable[..., UpdaterHarness]) -> None:
    v2 = publish("2")
    sources = RecordingSources()
    updater = harness(model={"source": "local", "path": str(v2.path)}, maxDownloadMBps=2.5,
                      component_args={"sources": sources})
    updater.wait_status("active", v2.ref)
    assert sources.caps == [2.5e6]
