"""Inference speed settings: reduced precision and ``torch.compile``, each with a logged fallback.

Precision
    ``float32`` runs the model as saved. ``float16``/``bfloat16`` run it under
    ``torch.autocast``: weights stay float32 and matrix multiplications and convolutions
    run in the reduced type. (Converting the weights instead breaks policies that build
    float32 tensors internally, ACT among them.) Policies whose LeRobot config has its own
    ``dtype`` field (pi0, pi0.5, pi0-FAST: ``float32`` or ``bfloat16``) get ``bfloat16``
    through that field instead, which also halves their memory.

    Which device supports what:

    * CPU: ``bfloat16`` (fast on CPUs with AVX512-BF16/AMX, correct everywhere);
      ``float16`` falls back to float32 with a warning: most CPUs have no float16
      arithmetic and emulating it is slower than float32.
    * CUDA: ``float16``; ``bfloat16`` where ``torch.cuda.is_bf16_supported()`` (Ampere or
      newer), else float32 with a warning.
    * MPS: ``float16``; ``bfloat16`` falls back to float32 with a warning.

Compile
    ``torch.compile`` wraps the part of the policy that runs on every inference (see
    :data:`COMPILE_TARGETS`). Compilation happens on the first call; a failure then (no C
    compiler on the device, an unsupported operator) puts the eager module back, logs a
    warning, and the inference is repeated eagerly. Compilation is slow where it works
    (measured on 2 shared CPU cores, torch 2.10: about 110 s for the small test ACT, whose
    later inferences were no faster than eager), so the component does it during its
    warm-up, before reporting RUNNING; it pays off for large models on GPUs.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from vla_edge.errors import PolicyError

log = logging.getLogger(__name__)

DTYPES = ("float32", "float16", "bfloat16")

COMPILE_TARGETS: dict[str, str] = {
    "act": "model",
    "diffusion": "diffusion.unet",
    "smolvla": "model.sample_actions",
    "pi0": "model.sample_actions",
    "pi05": "model.sample_actions",
    "pi0_fast": "model.sample_actions_fast",
}
"""Attribute (dotted, from the policy) compiled for each policy type: what each inference spends its time in."""


def resolve_dtype(requested: str, device: str) -> str:
    """The precision to use on ``device``: ``requested`` where the device supports it, else float32 (logged)."""
    import torch

    if requested not in DTYPES:
        raise PolicyError(f"unknown dtype {requested!r}; use one of {', '.join(DTYPES)}")
    kind = device.split(":", 1)[0]
    if requested == "float32":
        return requested
    if kind == "cpu" and requested == "float16":
        log.warning("dtype float16 is not supported on CPU (no float16 arithmetic; emulated it is slower than "
                    "float32): using float32. Use bfloat16 for reduced precision on CPU.")
        return "float32"
    if kind == "cuda" and requested == "bfloat16" and not torch.cuda.is_bf16_supported():
        log.warning("dtype bfloat16 is not supported by this CUDA device: using float32 (float16 is supported)")
        return "float32"
    if kind == "mps" and requested == "bfloat16":
        log.warning("dtype bfloat16 is not supported on MPS here: using float32 (float16 is supported)")
        return "float32"
    return requested


def own_dtype_field(config: Any) -> bool:
    """True when the LeRobot config has its own precision field (``float32``/``bfloat16``)."""
    return isinstance(getattr(config, "dtype", None), str)


def autocast(device: str, dtype: str) -> contextlib.AbstractContextManager[Any]:
    """The context an inference runs in: ``torch.autocast`` for a reduced precision, else nothing."""
    import torch

    if dtype == "float32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.split(":", 1)[0], dtype=getattr(torch, dtype))


def _torch_compile(target: Callable[..., Any]) -> Callable[..., Any]:
    """The one place ``torch.compile`` is called (tests replace it to force a failure)."""
    import torch

    return torch.compile(target)


@dataclass
class Compiled:
    """One attribute of a policy replaced by its compiled version, and how to put the original back."""

    owner: Any
    name: str
    original: Any
    shadowed_method: bool

    def revert(self) -> None:
        if self.shadowed_method:
            with contextlib.suppress(AttributeError):  # the instance attribute is ours; the method remains
                delattr(self.owner, self.name)
        else:
            setattr(self.owner, self.name, self.original)


def compile_policy(policy: Any, policy_type: str) -> Compiled | None:
    """Wrap the policy's per-inference module in ``torch.compile``; None (logged) when that is not possible."""
    target = COMPILE_TARGETS.get(policy_type)
    if target is None:
        log.warning("compile requested, but vla-edge does not know what to compile in %r policies; running eagerly",
                    policy_type)
        return None
    *path, name = target.split(".")
    owner = policy
    try:
        for part in path:
            owner = getattr(owner, part)
        original = getattr(owner, name)
    except AttributeError:
        log.warning("compile requested, but this %r policy has no %s; running eagerly", policy_type, target)
        return None
    shadowed_method = hasattr(type(owner), name) and name not in vars(owner) and name not in getattr(owner, "_modules", {})
    try:
        setattr(owner, name, _torch_compile(original))
    except Exception as exc:  # noqa: BLE001 - torch.compile raises many types (RuntimeError, dynamo errors...)
        log.warning("torch.compile of %s failed (%s: %s); running eagerly", target, type(exc).__name__, exc)
        return None
    log.info("%s of the %s policy will be compiled with torch.compile on its first inference", target, policy_type)
    return Compiled(owner, name, original, shadowed_method)
