"""Load a LeRobot pretrained policy directory and run it, with LeRobot's own code.

A policy directory is what ``policy.save_pretrained(dir)`` plus
``preprocessor.save_pretrained(dir)`` / ``postprocessor.save_pretrained(dir)`` write:
``config.json``, ``model.safetensors``, ``policy_preprocessor.json``,
``policy_postprocessor.json`` and the processors' ``*.safetensors`` state files.

Loading never touches the network: everything is read from the directory
(``local_files_only``), weights come from safetensors only, and a processor step may
only name a class that LeRobot registered or that lives in the ``lerobot`` package.
(SmolVLA and pi0 also read their backbone's config and tokenizer through
``transformers``: with ``HF_HUB_OFFLINE=1``, which the entry point sets, only from the
local Hugging Face cache.) Checks that need only ``config.json`` (installed extras,
features: :mod:`vla_edge.policies.checks`) run before any weights are read.

torch and lerobot are imported inside the functions, so importing this module is cheap.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vla_edge.errors import PolicyError
from vla_edge.policies.checks import (
    ACTION_KEY,
    IMAGE_PREFIX,
    STATE_KEY,
    check_features,
    check_requirements,
)
from vla_edge.policies.policy import LoadedPolicy, _brief
from vla_edge.policies.speed import compile_policy, own_dtype_field, resolve_dtype

__all__ = [
    "ACTION_KEY",
    "IMAGE_PREFIX",
    "REQUIRED_FILES",
    "STATE_KEY",
    "LoadedPolicy",
    "check_policy_dir",
    "load_policy",
    "resolve_device",
    "set_torch_threads",
]

log = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
PREPROCESSOR_FILE = "policy_preprocessor.json"
POSTPROCESSOR_FILE = "policy_postprocessor.json"
REQUIRED_FILES = (CONFIG_FILE, WEIGHTS_FILE, PREPROCESSOR_FILE, POSTPROCESSOR_FILE)

_EXPORT_HINT = (
    "A policy directory is written by policy.save_pretrained(dir) together with "
    "preprocessor.save_pretrained(dir) and postprocessor.save_pretrained(dir) "
    "(lerobot-train checkpoints contain all of them under pretrained_model/)."
)


def resolve_device(requested: str) -> str:
    """Map a requested torch device to one this machine has; CUDA/MPS fall back to CPU with a warning.

    ``auto`` picks CUDA, else MPS, else the CPU, without a warning: one configuration for a
    thing group that mixes GPU and CPU-only devices.
    """
    import torch

    wanted = requested.strip().lower()
    if wanted == "cpu":
        return "cpu"
    if wanted == "auto":
        if torch.cuda.is_available():
            return "cuda"
        return "mps" if torch.backends.mps.is_available() else "cpu"
    if wanted == "cuda" or wanted.startswith("cuda:"):
        if torch.cuda.is_available():
            index = int(wanted.split(":", 1)[1]) if ":" in wanted else 0
            if index < torch.cuda.device_count():
                return wanted
            log.warning(
                "device %r requested but only %d CUDA device(s) exist; using CPU", requested, torch.cuda.device_count()
            )
            return "cpu"
        log.warning("device %r requested but CUDA is not available on this machine; falling back to CPU", requested)
        return "cpu"
    if wanted == "mps":
        if torch.backends.mps.is_available():
            return "mps"
        log.warning("device 'mps' requested but MPS is not available; falling back to CPU")
        return "cpu"
    raise PolicyError(f"unknown device {requested!r}; use 'auto', 'cpu', 'cuda', 'cuda:<index>' or 'mps'")


def set_torch_threads(count: int) -> None:
    """Limit torch's intra-op CPU threads (process-wide) so inference leaves cores for the other components."""
    import torch

    if count < 1:
        raise PolicyError(f"torch thread count must be >= 1, got {count}")
    torch.set_num_threads(count)


def check_policy_dir(path: Path) -> None:
    """Raise PolicyError naming every missing or unusable file of a policy directory."""
    if not path.exists():
        raise PolicyError(
            f"policy directory {path} does not exist; set policyPath to a LeRobot policy directory. {_EXPORT_HINT}"
        )
    if not path.is_dir():
        raise PolicyError(
            f"policy path {path} is a file, not a directory; point policyPath at the directory containing it"
        )
    missing = [name for name in REQUIRED_FILES if not (path / name).is_file()]
    if missing:
        raise PolicyError(f"policy directory {path} is incomplete: missing {', '.join(missing)}. {_EXPORT_HINT}")
    for name in (PREPROCESSOR_FILE, POSTPROCESSOR_FILE):
        _check_processor_file(path, name)


def _check_processor_file(path: Path, name: str) -> None:
    try:
        spec = json.loads((path / name).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PolicyError(
            f"{path / name} is not readable JSON ({exc}); re-export the processors with save_pretrained"
        ) from exc
    steps = spec.get("steps") if isinstance(spec, dict) else None
    if not isinstance(steps, list):
        raise PolicyError(f"{path / name} has no 'steps' list; it is not a LeRobot processor file. {_EXPORT_HINT}")
    for index, step in enumerate(steps):
        if not isinstance(step, dict):
            raise PolicyError(f"{path / name}: step {index} is not an object")
        cls = step.get("class")
        if "registry_name" not in step and not (isinstance(cls, str) and cls.startswith("lerobot.")):
            # A "class" entry makes LeRobot import that module: only allow LeRobot's own.
            raise PolicyError(
                f"{path / name}: step {index} names class {cls!r}, which is neither a registered LeRobot step nor "
                "in the lerobot package; refusing to import it. Use LeRobot's registered processor steps."
            )
        state_file = step.get("state_file")
        if state_file is not None and not (path / str(state_file)).is_file():
            raise PolicyError(
                f"policy directory {path} is incomplete: {name} needs {state_file}, which is missing. {_EXPORT_HINT}"
            )


def _step_names(path: Path, name: str) -> set[str]:
    spec = json.loads((path / name).read_text())
    return {str(step.get("registry_name", "")) for step in spec["steps"]}


def load_policy(
    path: Path | str,
    device: str = "cpu",
    *,
    strict: bool = True,
    dtype: str = "float32",
    compile: bool = False,
    cameras: Sequence[str] | None = None,
    joint_names: Sequence[str] | None = None,
) -> LoadedPolicy:
    """Load the policy in ``path`` with LeRobot's classes and processors, ready for inference.

    In this order, so that cheap checks fail first and nothing is loaded for a policy that
    cannot run: the directory's files, ``config.json``, the modules its policy type needs
    (PolicyError with the install command), its features against ``cameras`` and
    ``joint_names`` when given, then the weights and the processors.

    ``strict`` (default) refuses weights files that miss or add parameters, so a
    mismatched checkpoint fails here instead of running with random weights. ``dtype``
    and ``compile``: see :mod:`vla_edge.policies.speed`.
    """
    path = Path(path).expanduser().resolve()
    check_policy_dir(path)
    try:
        from lerobot.configs.policies import PreTrainedConfig
        from lerobot.policies.factory import get_policy_class, make_pre_post_processors
    except ImportError as exc:
        raise PolicyError(f"LeRobot is not installed ({exc}); install vla-edge[inference]") from exc

    try:
        config = PreTrainedConfig.from_pretrained(path, local_files_only=True)
    except Exception as exc:  # draccus/json raise many types for a broken config
        raise PolicyError(
            f"{path / CONFIG_FILE} is not a valid LeRobot policy config: {_brief(exc)}. "
            "Check that it was written by save_pretrained of the installed LeRobot version."
        ) from exc
    check_requirements(config.type, path)
    if cameras is not None and joint_names is not None:
        check_features(config.input_features or {}, config.output_features or {}, cameras, joint_names, path)
    chosen = resolve_device(device)
    precision = resolve_dtype(dtype, chosen)
    _prepare_config(config, chosen, precision)
    try:
        policy_class = get_policy_class(config.type)
    except (ValueError, ImportError) as exc:
        raise PolicyError(
            f"policy type {config.type!r} in {path / CONFIG_FILE} is not available in LeRobot: {exc}"
        ) from exc
    try:
        policy = policy_class.from_pretrained(path, config=config, local_files_only=True, strict=strict)
    except ImportError as exc:
        raise PolicyError(
            f"the {config.type!r} policy in {path} needs a module that is not installed ({exc}); "
            "install the LeRobot extra for this policy type"
        ) from exc
    except Exception as exc:  # safetensors/torch raise RuntimeError, OSError, ValueError...
        raise PolicyError(
            f"cannot load the weights in {path / WEIGHTS_FILE} into the {config.type!r} policy: {_brief(exc)}. "
            "The weights must come from save_pretrained of a policy with this exact config.json."
        ) from exc
    overrides = (
        {"device_processor": {"device": chosen}} if "device_processor" in _step_names(path, PREPROCESSOR_FILE) else {}
    )
    try:
        preprocessor, postprocessor = make_pre_post_processors(
            config,
            pretrained_path=str(path),
            preprocessor_overrides=overrides,
            postprocessor_overrides={},
        )
    except Exception as exc:  # LeRobot raises FileNotFoundError, ValueError, KeyError, ImportError...
        raise PolicyError(
            f"cannot load the processors in {path}: {_brief(exc)}. "
            "Re-export them with save_pretrained, or migrate older checkpoints with LeRobot's migration script."
        ) from exc
    compiled = compile_policy(policy, config.type) if compile else None
    loaded = LoadedPolicy(path, policy, preprocessor, postprocessor, chosen, dtype=precision, compiled=compiled)
    log.info(
        "loaded %s policy from %s on %s (%s%s): inputs %s, outputs %s, %d observation(s) per inference",
        config.type,
        path,
        chosen,
        precision,
        ", compiled on first inference" if compiled else "",
        {k: tuple(v.shape) for k, v in loaded.input_features.items()},
        {k: tuple(v.shape) for k, v in loaded.output_features.items()},
        loaded.observation_steps,
    )
    return loaded


def _prepare_config(config: Any, device: str, precision: str) -> None:
    """Settings applied to the parsed config before the model is built."""
    config.device = device
    if getattr(config, "pretrained_backbone_weights", None):
        # Every weight comes from model.safetensors (strict load); never fetch backbone weights.
        config.pretrained_backbone_weights = None
    if getattr(config, "compile_model", False):
        # vla-edge compiles (or not) itself, per its compile setting, with a fallback.
        config.compile_model = False
    if own_dtype_field(config):
        # pi0/pi0.5 handle their precision themselves: bfloat16 there, everything else float32.
        config.dtype = "bfloat16" if precision == "bfloat16" else "float32"
