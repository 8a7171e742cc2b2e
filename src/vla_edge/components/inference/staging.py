"""The pieces of staging a model that need no switcher state: identity, memory, loading.

Memory
    What a model needs is the ``memory_mb`` of its command (the manifest's figure) or, without
    one, an estimate from its weight files (:func:`estimate_memory_mb`). What is free is
    CUDA's free device memory for a CUDA device, else ``MemAvailable`` of ``/proc/meminfo``
    (:func:`available_memory_mb`). :func:`memory_plan` compares them, keeping a margin for
    the OS, the other components and allocator slack, and decides: beside the serving model,
    after unloading it (only with ``allow_unload``: the updater holds the arm), or not at all.
    Estimates are rough on purpose; the margin absorbs the error, and a manifest that states
    the model's measured need replaces the estimate.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from vla_edge import messages
from vla_edge.components.inference.config import InferenceConfig
from vla_edge.errors import ConfigurationError
from vla_edge.models import read_model_ref
from vla_edge.policies import LoadedPolicy, is_demo_policy
from vla_edge.policies.validate import ModelRejected

MEMORY_MARGIN_MB = 256.0
"""Memory left free beyond the new model's need: the OS, the other components, allocator slack."""
ESTIMATE_FACTOR = 1.2
ESTIMATE_OVERHEAD_MB = 64.0
"""Need estimate without a manifest figure: weight files x factor + overhead (processors, activations)."""
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
STAGE_NICE = 10
"""How much lower the staging thread's CPU priority is than the inference loop's."""

log = logging.getLogger(__name__)


def describe(ref: messages.ModelRef) -> str:
    return f"{ref.name} {ref.version}"


def lower_thread_priority(logger: logging.Logger, by: int = STAGE_NICE) -> None:
    """Make the calling thread yield the CPU to the inference loop (Linux niceness is per thread).

    The in-process load and warm-up run on the cores the loop needs for its next chunk.
    """
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + by))
    except (OSError, AttributeError) as exc:  # not Linux, or not permitted: staging runs at the loop's priority
        logger.info("cannot lower the staging thread's priority (%s)", exc)


def estimate_memory_mb(path: Path) -> float:
    """What loading the model in ``path`` needs, estimated from the size of its weight files."""
    weights = sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and p.suffix in WEIGHT_SUFFIXES)
    return round(weights / 2**20 * ESTIMATE_FACTOR + ESTIMATE_OVERHEAD_MB, 1)


def available_memory_mb(device: str) -> float:
    """Free memory for a model on ``device``: CUDA's free device memory, else MemAvailable of /proc/meminfo."""
    if device.startswith("cuda"):
        import torch

        free, _total = torch.cuda.mem_get_info(torch.device(device))
        return free / 2**20
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024.0
    except (OSError, ValueError, IndexError) as exc:
        log.warning("cannot read MemAvailable from /proc/meminfo (%s); the memory check is skipped", exc)
    return math.inf


@dataclass(eq=False)
class LoadedModel:
    """One loaded model and the figures of its staging."""

    ref: messages.ModelRef
    policy: LoadedPolicy
    memory_mb: float
    beside: bool = False
    validation_ms: float | None = None
    load_ms: float | None = None
    smoke_ms_p50: float | None = None

    @property
    def path(self) -> Path:
        return Path(self.policy.path)

    @property
    def untrained(self) -> bool:
        return is_demo_policy(self.path)

    def describe(self) -> str:
        return describe(self.ref)


def check_identity(ref: messages.ModelRef, path: Path) -> None:
    """ModelRejected unless ``path`` holds exactly ``ref``: the actuator accepts chunks by that identity."""
    try:
        actual = read_model_ref(path)
    except ConfigurationError as exc:
        raise ModelRejected("load_failed", str(exc)) from exc
    if actual != ref:
        raise ModelRejected(
            "identity_mismatch",
            f"{path} holds {describe(actual)} (sha256 {actual.sha256[:12]}...), not {describe(ref)} "
            f"(sha256 {ref.sha256[:12]}...): its files changed after the download or the path is wrong. "
            "Download and verify the model again.",
        )


def memory_plan(
    ref: messages.ModelRef, need: float, free: float, margin: float, serving: LoadedModel | None, allow_unload: bool
) -> bool:
    """True: load beside the serving model. False: load after unloading it. ModelRejected: not here."""
    if need + margin <= free:
        return serving is not None
    head = (f"{describe(ref)} needs about {need:.0f} MB plus a {margin:.0f} MB margin; {free:.0f} MB is available"
            + (f" beside the serving model {serving.describe()}" if serving else ""))
    if serving is None:
        raise ModelRejected("insufficient_memory", f"{head}. Free memory on the device or use a smaller model.")
    if not allow_unload:
        raise ModelRejected(
            "insufficient_memory",
            f"{head}. {serving.describe()} keeps serving. To switch, hold the arm (ModelStatus hold=true) and "
            "retry with allow_unload: the serving model is then unloaded before this one loads.",
        )
    if need + margin > free + serving.memory_mb:
        raise ModelRejected(
            "insufficient_memory",
            f"{head}, and unloading {serving.describe()} frees only about {serving.memory_mb:.0f} MB. "
            "Free memory on the device, use lower precision or a smaller model.",
        )
    return False


class ModelLoader:
    """Loads a model in this process as the component's configuration says, and warms it up."""

    def __init__(self, load: Callable[..., LoadedPolicy], config: InferenceConfig, device: str,
                 task: Callable[[], str]) -> None:
        self._load = load
        self.config = config
        self.device = device
        self._task = task

    def load(self, path: Path) -> tuple[LoadedPolicy, float]:
        """The loaded, warmed-up policy and its load time in ms (the warm-up not included)."""
        started = time.perf_counter()
        policy = self._load(path, self.device, dtype=self.config.dtype, compile=self.config.compile,
                            cameras=self.config.cameras, joint_names=self.config.joint_names)
        load_ms = round((time.perf_counter() - started) * 1000.0, 3)
        policy.check_io(self.config.cameras, self.config.joint_names)
        policy.warm_up(max(1, self.config.warmup_inferences), self._task())  # its first chunk pays no lazy init
        return policy, load_ms
