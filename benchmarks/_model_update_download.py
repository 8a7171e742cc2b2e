"""Download half of the model-update benchmark: a model on moto's S3 server, fetched in child processes.

The parent side (:class:`S3Fixture`) writes a LeRobot-shaped model directory whose weights are
random bytes behind a valid safetensors header (so ``build_manifest`` accepts it), uploads it to
moto's ``ThreadedMotoServer`` on loopback and runs one child process per download.

The child side (``python _model_update_download.py child ...``) does exactly one download and
prints one JSON line (seconds, bytes, resident memory): ours (``S3ModelSource.fetch``: ranged
GETs, sha256 on the fly, fsync, rename), boto3's plain ``client.download_file`` per object
(s3transfer defaults: 8 MiB parts, 10 threads, no checksum of ours), or, as the server's
ceiling, one plain GET per file read and dropped (``get``: no range, no disk, no checksum). A
child of its own because peak RSS is per process: the parent holds moto and every object it
serves, and a child that only downloads shows what the download itself costs. The peak is reset
after imports (``/proc/self/clear_refs`` 5) so it measures the download, not the import of boto3.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import struct
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MiB = 1024 * 1024
REGION = "us-east-1"
WRITE_PIECE = 8 * MiB


def s3_client(endpoint_url: str) -> Any:
    """A boto3 client for the loopback server: dummy credentials, path-style, botocore's standard retries."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3", endpoint_url=endpoint_url, region_name=REGION, aws_access_key_id="bench",
        aws_secret_access_key="bench",
        config=Config(retries={"max_attempts": 3, "mode": "standard"}, s3={"addressing_style": "path"}),
    )


def write_model_dir(directory: Path, total_bytes: int, seed: int = 0) -> Path:
    """A LeRobot-shaped directory of about ``total_bytes``: config.json, processors, one large model.safetensors.

    The weights are one F32 tensor of random bytes, written in pieces so the benchmark itself
    never holds the file in memory.
    """
    directory.mkdir(parents=True, exist_ok=True)
    config = {
        "type": "act",
        "input_features": {"observation.images.front": {"type": "VISUAL", "shape": [3, 120, 160]},
                           "observation.state": {"type": "STATE", "shape": [6]}},
        "output_features": {"action": {"type": "ACTION", "shape": [6]}},
    }
    (directory / "config.json").write_text(json.dumps(config, indent=2))
    (directory / "policy_preprocessor.json").write_text(json.dumps({"name": "policy_preprocessor", "steps": []}))
    (directory / "policy_postprocessor.json").write_text(json.dumps({"name": "policy_postprocessor", "steps": []}))
    floats = max(1, total_bytes // 4)
    header = {"__metadata__": {"format": "pt"},
              "weight": {"dtype": "F32", "shape": [floats], "data_offsets": [0, floats * 4]}}
    encoded = json.dumps(header).encode()
    encoded += b" " * (-len(encoded) % 8)
    import numpy as np

    rng = np.random.default_rng(seed)
    with (directory / "model.safetensors").open("wb") as out:
        out.write(struct.pack("<Q", len(encoded)) + encoded)
        left = floats * 4
        while left:
            n = min(WRITE_PIECE, left)
            out.write(rng.bytes(n))
            left -= n
    return directory


@dataclass(frozen=True)
class Download:
    """One child's download: what it moved, how long it took, and its memory."""

    method: str
    seconds: float
    bytes: int
    rss_before_mb: float
    peak_rss_mb: float
    peak_reset: bool

    @property
    def mb_per_s(self) -> float:
        return self.bytes / 1e6 / self.seconds

    @property
    def growth_mb(self) -> float:
        return self.peak_rss_mb - self.rss_before_mb


class S3Fixture:
    """moto's server on loopback holding one model (its files and manifest) under ``prefix``."""

    def __init__(self, workdir: Path, size_bytes: int) -> None:
        from moto.server import ThreadedMotoServer

        from vla_edge.updater.manifest import build_manifest, write_manifest

        self.workdir = workdir
        self.source = write_model_dir(workdir / "source", size_bytes)
        started = time.perf_counter()
        self.manifest = build_manifest(self.source, name="bench-download", version="1")
        self.hash_s = time.perf_counter() - started
        self.manifest_path = write_manifest(self.manifest, workdir / "manifest.json")
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.endpoint_url = f"http://{host}:{port}"
        self.bucket = f"models-{uuid.uuid4().hex[:8]}"
        self.prefix = "bench/v1"
        client = s3_client(self.endpoint_url)
        client.create_bucket(Bucket=self.bucket)
        for relative in self.manifest.files:  # upload_file: multipart for the large one, as a publisher would
            client.upload_file(str(self.source / relative), self.bucket, f"{self.prefix}/{relative}")

    @property
    def total_bytes(self) -> int:
        return self.manifest.total_bytes

    def download(self, method: str, chunk_mib: float) -> Download:
        """Run one download of every file of the model in a fresh child process (its target removed after)."""
        target = self.workdir / f"down-{method}-{uuid.uuid4().hex[:6]}"
        command = [sys.executable, str(Path(__file__).resolve()), "child", "--method", method,
                   "--endpoint", self.endpoint_url, "--bucket", self.bucket, "--prefix", self.prefix,
                   "--manifest", str(self.manifest_path), "--target", str(target), "--chunk-mib", str(chunk_mib)]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=1800, check=False)
        finally:
            shutil.rmtree(target, ignore_errors=True)
        if done.returncode != 0:
            raise RuntimeError(f"{method} download failed (exit {done.returncode}): {done.stderr[-2000:]}")
        result = json.loads(done.stdout.strip().splitlines()[-1])
        return Download(method=method, **result)

    def stop(self) -> None:
        self._server.stop()


# --- child side ----------------------------------------------------------------------------------


def _status_mb(field: str) -> float:
    """``VmRSS``/``VmHWM`` of this process in MB (1e6 bytes), from /proc/self/status."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024 / 1e6
    raise RuntimeError(f"{field} is not in /proc/self/status (not Linux?)")


def _reset_peak() -> bool:
    """Make VmHWM start again from the current RSS (Linux >= 4.0); False where that is refused."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _child(args: argparse.Namespace) -> None:
    from boto3.s3.transfer import TransferConfig

    from vla_edge.updater.download import S3ModelSource, object_key
    from vla_edge.updater.manifest import read_manifest

    manifest = read_manifest(Path(args.manifest))
    client = s3_client(args.endpoint)
    client.head_bucket(Bucket=args.bucket)  # connection pool and credentials warmed outside the timing
    source = S3ModelSource(client, chunk_size=int(args.chunk_mib * MiB))
    transfer = TransferConfig()  # boto3's defaults: the "plain" download_file
    target = Path(args.target)
    target.mkdir(parents=True)
    read = 0
    reset = _reset_peak()
    before = _status_mb("VmRSS") if reset else _status_mb("VmHWM")
    started = time.perf_counter()
    if args.method == "ours":
        source.fetch(args.bucket, args.prefix, manifest, target)
    elif args.method == "get":
        for relative in manifest.files:
            body = client.get_object(Bucket=args.bucket, Key=object_key(args.prefix, relative))["Body"]
            while piece := body.read(MiB):
                read += len(piece)
    else:
        for relative in manifest.files:
            path = target / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            client.download_file(args.bucket, object_key(args.prefix, relative), str(path), Config=transfer)
    seconds = time.perf_counter() - started
    moved = read or sum(p.stat().st_size for p in target.rglob("*") if p.is_file())
    if moved != manifest.total_bytes:
        raise SystemExit(f"downloaded {moved} bytes, the manifest says {manifest.total_bytes}")
    print(json.dumps({"seconds": seconds, "bytes": moved, "rss_before_mb": round(before, 2),
                      "peak_rss_mb": round(_status_mb("VmHWM"), 2), "peak_reset": reset}))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="one download for benchmarks/model_update.py (child process)")
    parser.add_argument("role", choices=["child"])
    parser.add_argument("--method", choices=["ours", "boto3", "get"], required=True)
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--bucket", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--manifest", required=True)
    parser.add_argument("--target", required=True)
    parser.add_argument("--chunk-mib", type=float, default=8.0)
    _child(parser.parse_args(argv))


if __name__ == "__main__":
    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
    main()
