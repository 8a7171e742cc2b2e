"""From a desired model (``model`` in the configuration) to a verified model in the store.

The two steps are apart because the manifest alone says whether anything needs doing: a
manifest naming the active model ends the rollout before a byte of weights moves.

boto3 is imported only here and only for an ``s3`` source, so a device that deploys models
as Greengrass artifacts never needs it. The client takes its credentials from the default
chain: on a device the token exchange service, which the nucleus announces through
``AWS_CONTAINER_CREDENTIALS_FULL_URI`` to components that depend on
``aws.greengrass.TokenExchangeService``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vla_edge.components.model_updater.config import ModelSpec
from vla_edge.errors import DownloadError, ModelUpdateError
from vla_edge.updater.manifest import ModelManifest, read_manifest
from vla_edge.updater.store import InstalledModel, ModelStore
from vla_edge.updater.transfer import ProgressFn

log = logging.getLogger(__name__)

S3ClientFactory = Callable[[ModelSpec], Any]


def default_s3_client(spec: ModelSpec) -> Any:
    """A boto3 S3 client for ``spec``: default credential chain, ``endpoint_url`` only when configured."""
    try:
        import boto3
        from botocore.config import Config
    except ImportError as exc:
        raise DownloadError(
            "source s3 needs boto3: install vla-edge with the updater extra (pip install 'vla-edge[updater]')"
        ) from exc
    options: dict[str, Any] = {"config": Config(retries={"max_attempts": 3, "mode": "standard"},
                                                connect_timeout=10, read_timeout=60)}
    if spec.region:
        options["region_name"] = spec.region
    if spec.endpoint_url:
        options["endpoint_url"] = spec.endpoint_url
    return boto3.client("s3", **options)


@dataclass(frozen=True)
class Fetched:
    """What getting a model into the store took."""

    model: InstalledModel
    bytes_fetched: int
    """Bytes copied or downloaded now: not those a resumed transfer had, 0 when already installed."""
    seconds: float


class ModelSources:
    """Reads manifests and fetches model files for the desired model's source."""

    def __init__(self, s3_client_factory: S3ClientFactory = default_s3_client,
                 clock: Callable[[], float] = time.monotonic, **s3_options: Any) -> None:
        """``s3_options`` go to :class:`~vla_edge.updater.download.S3ModelSource` (retries, backoff, sleep)."""
        self._s3_client_factory = s3_client_factory
        self._clock = clock
        self._s3_options = s3_options
        self._s3: tuple[ModelSpec, Any] | None = None

    def manifest(self, spec: ModelSpec) -> ModelManifest:
        """The desired model's manifest (ManifestError/DownloadError say what is wrong)."""
        if spec.source in ("local", "artifact"):
            return read_manifest(Path(spec.path).expanduser())
        if spec.source == "s3":
            return self._s3_source(spec).fetch_manifest(spec.bucket, spec.manifest_key)
        raise ModelUpdateError(f"source {spec.source} has nothing to fetch")

    def fetch(self, spec: ModelSpec, manifest: ModelManifest, store: ModelStore, progress: ProgressFn | None = None,
              max_bytes_per_s: float | None = None) -> Fetched:
        """Bring the model into ``store``, verified (ModelStore.install checks every file again)."""
        started = self._clock()
        existing = store.get(manifest.ref)
        if existing is not None:
            log.info("%s %s is already in the store at %s", manifest.name, manifest.version, existing.path)
            if progress is not None:
                progress(manifest.total_bytes, manifest.total_bytes, 0.0)
            return Fetched(existing, 0, 0.0)
        first: list[int] = []
        last = [0]

        def count(done: int, total: int, rate: float) -> None:
            if not first:
                first.append(done)  # bytes a resumed transfer already had
            last[0] = done
            if progress is not None:
                progress(done, total, rate)

        with store.stage(manifest) as staging:
            if spec.source == "s3":
                self._s3_source(spec).fetch(spec.bucket, spec.prefix, manifest, staging, count, max_bytes_per_s)
            else:
                from vla_edge.updater.local import LocalDirectorySource

                LocalDirectorySource().fetch(Path(spec.path).expanduser(), manifest, staging, count, max_bytes_per_s)
            model = store.install(staging, manifest)
        return Fetched(model, last[0] - (first[0] if first else 0), self._clock() - started)

    def _s3_source(self, spec: ModelSpec) -> Any:
        from vla_edge.updater.download import S3ModelSource

        if self._s3 is None or self._s3[0] != spec:
            self._s3 = (spec, self._s3_client_factory(spec))
        return S3ModelSource(self._s3[1], **self._s3_options)
