"""Resumable S3 downloads against moto's server over real HTTP (some through a proxy that cuts links)."""

from __future__ import annotations

import os
from collections import namedtuple
from pathlib import Path

import pytest
from support.model_dirs import published_model
from support.s3 import CuttingProxy, MotoS3, upload_directory

from vla_edge.errors import DownloadError, InsufficientSpace, ManifestError, VerificationError
from vla_edge.models import directory_digest, read_model_ref
from vla_edge.updater import throttle
from vla_edge.updater.download import S3ModelSource
from vla_edge.updater.manifest import MANIFEST_FILE, ModelManifest, build_manifest, write_manifest
from vla_edge.updater.record import ActiveRecord
from vla_edge.updater.store import ModelStore
from vla_edge.updater.transfer import READ_PIECE

PREFIX = "models/tiny/1"
MiB = 1024 * 1024
Usage = namedtuple("Usage", "total used free")


def _no_sleep(seconds: float) -> None:
    """Retries back off in tests without waiting."""


@pytest.fixture
def store(tmp_path: Path) -> tuple[ModelStore, ActiveRecord]:
    """A store already serving a model: every failed update must leave it exactly so."""
    store = ModelStore(tmp_path / "store")
    old = tmp_path / "old-model"
    manifest = published_model(old, name="serving", version="1", seed=99, weight_floats=1000)
    store.activate(store.install(old, manifest).ref)
    return store, store.record()


def _assert_unchanged(store: ModelStore, record: ActiveRecord) -> None:
    assert store.record() == record
    assert [m.ref.name for m in store.installed()] == ["serving"]


def _source(client: object, **kwargs: object) -> S3ModelSource:
    return S3ModelSource(client, sleep=kwargs.pop("sleep", _no_sleep), **kwargs)  # type: ignore[arg-type]


def test_fetch_the_act_policy_and_install_it(act_copy: Path, moto_s3: MotoS3, bucket: str,
                                             store: tuple[ModelStore, ActiveRecord]) -> None:
    published = build_manifest(act_copy, name="act", version="1.0", robot="so101_follower", norm_mode="degrees")
    write_manifest(published, act_copy)
    upload_directory(moto_s3.client(), bucket, "models/act/1.0", act_copy)
    model_store, _ = store
    source = _source(moto_s3.client(), chunk_size=4 * MiB)
    progress: list[tuple[int, int, float]] = []

    manifest = source.fetch_manifest(bucket, f"models/act/1.0/{MANIFEST_FILE}")
    with model_store.stage(manifest) as staging:
        source.fetch(bucket, "models/act/1.0/", manifest, staging, progress=lambda *p: progress.append(p))
        model = model_store.install(staging, manifest)
    model_store.activate(model.ref, "deployment 42")

    assert manifest == published
    assert directory_digest(model.path) == manifest.sha256 == published.sha256
    assert read_model_ref(model.path) == manifest.ref
    assert model_store.active().path == model.path
    done = [p[0] for p in progress]
    assert done == sorted(done) and progress[-1][:2] == (manifest.total_bytes, manifest.total_bytes)
    assert not list(model.path.rglob("*.part"))


def test_a_download_cut_mid_way_resumes_from_the_part(act_copy: Path, moto_s3: MotoS3, bucket: str,
                                                      proxy: CuttingProxy,
                                                      store: tuple[ModelStore, ActiveRecord]) -> None:
    manifest = build_manifest(act_copy, name="act", version="1.0")
    write_manifest(manifest, act_copy)
    upload_directory(moto_s3.client(), bucket, "models/act/1.0", act_copy)
    model_store, record = store
    size = manifest.files["model.safetensors"].size
    chunk = 4 * MiB
    staging = model_store.staging_dir(manifest)

    # the link drops 10 MB into the transfer and stays down: the first fetch gives up
    proxy.cut_after(10 * 1000 * 1000, then_down=True)
    with pytest.raises(DownloadError, match="resumes where this one stopped"):
        _source(moto_s3.client(proxy.endpoint_url), chunk_size=chunk, max_attempts=3).fetch(
            bucket, "models/act/1.0", manifest, staging)
    part = staging / "model.safetensors.part"
    kept = part.stat().st_size
    assert 0 < kept < size
    assert proxy.cuts == 1
    _assert_unchanged(model_store, record)
    done_before = {p.name for p in staging.iterdir() if not p.name.endswith(".part")}

    # a new process (a new source, a new client) after the link is back
    proxy.clear()
    proxy.up()
    _source(moto_s3.client(proxy.endpoint_url), chunk_size=chunk).fetch(bucket, "models/act/1.0", manifest, staging)

    ranges = proxy.ranges("/model.safetensors")
    assert ranges[0][0] == kept  # resumed at the part's length, not at a chunk boundary or zero
    # then contiguous, nothing asked twice
    assert all(b[0] == a[1] + 1 for a, b in zip(ranges, ranges[1:], strict=False))
    assert ranges[-1][1] == size - 1
    assert sum(last - first + 1 for first, last in ranges) == size - kept
    assert not any(proxy.ranges("/" + name) for name in done_before)  # completed files are not fetched again
    model = model_store.install(staging, manifest)
    assert directory_digest(model.path) == manifest.sha256


def test_a_connection_dropped_mid_body_is_retried_from_the_last_byte(tiny: tuple[Path, ModelManifest],
                                                                      moto_s3: MotoS3, bucket: str,
                                                                      proxy: CuttingProxy, tmp_path: Path) -> None:
    directory, manifest = tiny
    upload_directory(moto_s3.client(), bucket, PREFIX, directory)
    sleeps: list[float] = []
    chunk = 256 * 1024
    proxy.cut_after(600 * 1000)  # once, then the link works again

    staging = _source(moto_s3.client(proxy.endpoint_url), chunk_size=chunk, sleep=sleeps.append).fetch(
        bucket, PREFIX, manifest, tmp_path / "staging")

    ranges = proxy.ranges("/model.safetensors")
    restarts = [(a, b) for a, b in zip(ranges, ranges[1:], strict=False) if b[0] != a[1] + 1]
    assert len(restarts) == 1 and len(sleeps) == 1
    broken, retry = restarts[0]
    assert broken[0] < retry[0] <= broken[1]  # the retry asks from the first byte not received, not the range start
    assert directory_digest(staging) == manifest.sha256


def test_an_object_replaced_after_the_manifest_fails_verification(tiny: tuple[Path, ModelManifest],
                                                                  moto_s3: MotoS3, bucket: str,
                                                                  store: tuple[ModelStore, ActiveRecord]) -> None:
    directory, manifest = tiny
    upload_directory(moto_s3.client(), bucket, PREFIX, directory)
    same_size = bytes(manifest.files["model.safetensors"].size)
    moto_s3.client().put_object(Bucket=bucket, Key=f"{PREFIX}/model.safetensors", Body=same_size)
    model_store, record = store
    staging = model_store.staging_dir(manifest)

    with pytest.raises(VerificationError, match=r"model\.safetensors: sha256 .* the manifest says"):
        _source(moto_s3.client()).fetch(bucket, PREFIX, manifest, staging)

    assert not (staging / "model.safetensors.part").exists() and not (staging / "model.safetensors").exists()
    _assert_unchanged(model_store, record)


@pytest.mark.parametrize(("change", "says"), [(-1000, "shorter than the manifest"), (1000, "longer than the manifest")])
def test_an_object_of_the_wrong_size_fails_verification(tiny: tuple[Path, ModelManifest], moto_s3: MotoS3,
                                                        bucket: str, store: tuple[ModelStore, ActiveRecord],
                                                        change: int, says: str) -> None:
    directory, manifest = tiny
    upload_directory(moto_s3.client(), bucket, PREFIX, directory)
    data = (directory / "model.safetensors").read_bytes()
    changed = data[:change] if change < 0 else data + bytes(change)
    moto_s3.client().put_object(Bucket=bucket, Key=f"{PREFIX}/model.safetensors", Body=changed)
    model_store, record = store
    staging = model_store.staging_dir(manifest)

    with pytest.raises(VerificationError, match=says):
        _source(moto_s3.client(), chunk_size=64 * 1024).fetch(bucket, PREFIX, manifest, staging)

    assert not (staging / "model.safetensors.part").exists()
    _assert_unchanged(model_store, record)


def test_a_part_longer_than_the_manifest_is_discarded(tiny: tuple[Path, ModelManifest], moto_s3: MotoS3, bucket: str,
                                                      tmp_path: Path) -> None:
    directory, manifest = tiny
    upload_directory(moto_s3.client(), bucket, PREFIX, directory)
    staging = tmp_path / "staging"
    staging.mkdir()
    (staging / "config.json.part").write_bytes(b"x" * (manifest.files["config.json"].size + 1))

    with pytest.raises(VerificationError, match="config.json has"):
        _source(moto_s3.client()).fetch(bucket, PREFIX, manifest, staging)
    assert not (staging / "config.json.part").exists()
    _source(moto_s3.client()).fetch(bucket, PREFIX, manifest, staging)
    assert directory_digest(staging) == manifest.sha256


def test_disk_full_mid_way_keeps_the_part(tiny: tuple[Path, ModelManifest], moto_s3: MotoS3, bucket: str,
                                          store: tuple[ModelStore, ActiveRecord]) -> None:
    if not os.path.exists("/dev/full"):
        pytest.skip("needs /dev/full for a real ENOSPC")
    directory, manifest = tiny
    upload_directory(moto_s3.client(), bucket, PREFIX, directory)
    model_store, record = store
    staging = model_store.staging_dir(manifest)
    staging.mkdir(parents=True)
    part = staging / "model.safetensors.part"
    part.symlink_to("/dev/full")

    with pytest.raises(InsufficientSpace, match="disk filled up .* resumes"):
        _source(moto_s3.client()).fetch(bucket, PREFIX, manifest, staging)

    assert part.is_symlink()  # the part stays for a later resume
    _assert_unchanged(model_store, record)


def test_free_space_is_checked_before_the_first_byte(tiny: tuple[Path, ModelManifest], moto_s3: MotoS3, bucket: str,
                                                     proxy: CuttingProxy, tmp_path: Path) -> None:
    directory, manifest = tiny
    upload_directory(moto_s3.client(), bucket, PREFIX, directory)
    staging = tmp_path / "staging"
    staging.mkdir()
    already = 500_000
    (staging / "model.safetensors.part").write_bytes((directory / "model.safetensors").read_bytes()[:already])
    margin = 1000
    missing = manifest.total_bytes - already
    asked: list[Path] = []

    def usage(free: int):
        return lambda path: asked.append(path) or Usage(10**12, 0, free)

    with pytest.raises(InsufficientSpace, match=r"needs 0\.7 MB more .* 0\.7 MB is free"):
        _source(moto_s3.client(proxy.endpoint_url), space_margin_bytes=margin,
                disk_usage=usage(missing + margin - 1)).fetch(bucket, PREFIX, manifest, staging)
    assert proxy.requests == [] and asked == [staging]

    _source(moto_s3.client(proxy.endpoint_url), space_margin_bytes=margin,
            disk_usage=usage(missing + margin)).fetch(bucket, PREFIX, manifest, staging)
    assert directory_digest(staging) == manifest.sha256


def test_missing_bucket_and_object_say_what_to_check(tiny: tuple[Path, ModelManifest], moto_s3: MotoS3,
                                                     bucket: str, proxy: CuttingProxy,
                                                     store: tuple[ModelStore, ActiveRecord]) -> None:
    _, manifest = tiny
    model_store, record = store
    source = _source(moto_s3.client(proxy.endpoint_url))
    staging = model_store.staging_dir(manifest)

    with pytest.raises(DownloadError, match="bucket no-such-bucket does not exist"):
        source.fetch("no-such-bucket", PREFIX, manifest, staging)
    with pytest.raises(DownloadError, match=rf"s3://{bucket}/{PREFIX}/.* does not exist .*check the bucket and prefix"):
        source.fetch(bucket, PREFIX, manifest, staging)
    with pytest.raises(DownloadError, match="does not exist"):
        source.fetch_manifest(bucket, f"{PREFIX}/{MANIFEST_FILE}")
    assert len(proxy.requests) == 3  # not retried: retrying cannot create a bucket
    _assert_unchanged(model_store, record)


def test_an_unreachable_endpoint_is_retried_with_backoff_then_given_up(tiny: tuple[Path, ModelManifest],
                                                                       moto_s3: MotoS3, bucket: str,
                                                                       proxy: CuttingProxy, tmp_path: Path) -> None:
    _, manifest = tiny
    proxy.cut_after(0, then_down=True)  # every connection is closed at once
    sleeps: list[float] = []
    source = _source(moto_s3.client(proxy.endpoint_url), max_attempts=4, backoff_s=1.0, sleep=sleeps.append)

    gave_up = r"after 4 attempts .*check the network, the bucket and prefix.*s3:GetObject"
    with pytest.raises(DownloadError, match=gave_up):
        source.fetch(bucket, PREFIX, manifest, tmp_path / "staging")
    assert len(sleeps) == 3
    for attempt, delay in enumerate(sleeps):
        assert 0.5 * 2**attempt <= delay <= 2**attempt


def test_bad_manifest_object(moto_s3: MotoS3, bucket: str) -> None:
    moto_s3.client().put_object(Bucket=bucket, Key="m.json", Body=b'{"format": 1, "name": "x"}')
    with pytest.raises(ManifestError, match="s3://.*/m.json is not a valid manifest"):
        _source(moto_s3.client()).fetch_manifest(bucket, "m.json")


class FakeTime:
    """A clock that only moves when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_bandwidth_cap_counts_bytes_per_grant(tiny: tuple[Path, ModelManifest], moto_s3: MotoS3, bucket: str,
                                              tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    directory, manifest = tiny
    upload_directory(moto_s3.client(), bucket, PREFIX, directory)
    grants: list[int] = []
    buckets: list[throttle.TokenBucket] = []
    real_acquire = throttle.TokenBucket.acquire

    def counting(self: throttle.TokenBucket, amount: int) -> None:
        if self not in buckets:
            buckets.append(self)
        grants.append(amount)
        real_acquire(self, amount)

    monkeypatch.setattr(throttle.TokenBucket, "acquire", counting)
    fake = FakeTime()
    rate = 200_000
    start = fake.now
    progress: list[tuple[int, int, float]] = []

    S3ModelSource(moto_s3.client(), chunk_size=256 * 1024, clock=fake.clock, sleep=fake.sleep).fetch(
        bucket, PREFIX, manifest, tmp_path / "staging", progress=lambda *p: progress.append(p), max_bytes_per_s=rate)

    burst = buckets[0].burst
    assert len(buckets) == 1 and burst == rate // 4
    assert sum(grants) == manifest.total_bytes  # every byte written was granted first
    assert max(grants) <= min(burst, READ_PIECE)  # and no read was larger than one grant
    assert fake.now - start >= (manifest.total_bytes - burst) / rate  # simulated time: the cap held
    assert progress[-1][2] <= rate * manifest.total_bytes / (manifest.total_bytes - burst)
