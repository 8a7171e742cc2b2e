"""Checks made before a policy's weights are loaded: installed extras and input/output features.

Both work on the parsed ``config.json`` alone, so a policy that cannot run here (an extra
is missing, its cameras or joints differ from the configuration) is refused in well under
a second, before any weights are read and before the component subscribes to anything.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from vla_edge.errors import PolicyError

log = logging.getLogger(__name__)

IMAGE_PREFIX = "observation.images."
STATE_KEY = "observation.state"
ACTION_KEY = "action"
CAMERA_CHANNELS = 3
"""Camera frames are RGB: the camera component writes 3-channel rings."""

LANGUAGE_POLICY_TYPES = frozenset({"smolvla", "pi0", "pi05", "pi0_fast", "groot", "xvla", "wall_x"})
"""LeRobot policy types conditioned on a language instruction (besides any with a tokenizer step)."""

PI_TRANSFORMERS = "transformers @ git+https://github.com/huggingface/transformers.git@fix/lerobot_openpi"
"""The patched transformers LeRobot's pi0/pi0.5 code checks for (``transformers.models.siglip.check``)."""


@dataclass(frozen=True)
class Requirement:
    """What a policy type needs beyond ``lerobot`` itself."""

    modules: tuple[str, ...]
    extra: str
    """The extra LeRobot's pyproject names for it."""
    manual: str = ""
    """Install command to give when the installed LeRobot distribution does not declare ``extra``."""


_PI = Requirement(("transformers", "transformers.models.siglip.check"), "pi", f'pip install "{PI_TRANSFORMERS}"')
REQUIREMENTS: dict[str, Requirement] = {
    "smolvla": Requirement(("transformers", "num2words"), "smolvla"),
    "pi0": _PI,
    "pi05": _PI,
    "pi0_fast": _PI,
}


def module_available(name: str) -> bool:
    """True when ``name`` can be imported (a dotted name imports its parent packages to look)."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a missing parent package raises ModuleNotFoundError
        return False


def lerobot_extras() -> tuple[str, set[str]]:
    """(version, extras) of the installed ``lerobot`` distribution, from its metadata."""
    try:
        meta = importlib.metadata.metadata("lerobot")
    except importlib.metadata.PackageNotFoundError:
        return "", set()
    return str(meta["Version"] or ""), set(meta.get_all("Provides-Extra") or [])


def install_command(requirement: Requirement) -> str:
    """The pip command that installs what ``requirement`` needs for the installed LeRobot version."""
    version, extras = lerobot_extras()
    pin = f"=={version}" if version else ""
    if requirement.extra in extras or not requirement.manual:
        return f'pip install "lerobot[{requirement.extra}]{pin}"'
    # LeRobot's source pyproject has the extra, but a PyPI wheel cannot carry its git dependency.
    return (
        f"{requirement.manual} (the installed lerobot {version} declares no '{requirement.extra}' extra; "
        f'in a LeRobot source checkout of that version: pip install -e ".[{requirement.extra}]")'
    )


def check_requirements(policy_type: str, source: object) -> None:
    """Raise PolicyError naming the policy type and the install command when a needed module is missing."""
    requirement = REQUIREMENTS.get(policy_type)
    if requirement is None:
        return
    missing = [name for name in requirement.modules if not module_available(name)]
    if missing:
        raise PolicyError(
            f"the policy in {source} is a {policy_type!r} policy, which needs {', '.join(missing)} "
            f"(not installed here). Install it with: {install_command(requirement)}. "
            "Nothing was loaded."
        )


def needs_language(policy_type: str, step_names: Iterable[str]) -> bool:
    """True for policies conditioned on a task instruction: known VLA types, or a tokenizer step."""
    return policy_type in LANGUAGE_POLICY_TYPES or any("tokenizer" in name.lower() for name in step_names)


def _shape(feature: Any) -> tuple[int, ...]:
    return tuple(int(v) for v in getattr(feature, "shape", ()) or ())


def describe_features(input_features: Mapping[str, Any], output_features: Mapping[str, Any]) -> str:
    """One line: what the policy reads and writes, e.g. ``cameras top (3, 48, 64); state (5,); action (5,)``."""
    cameras = [f"{key[len(IMAGE_PREFIX):]} {_shape(f)}" for key, f in input_features.items()
               if key.startswith(IMAGE_PREFIX)]
    parts = [f"cameras {', '.join(cameras) if cameras else '(none)'}"]
    if STATE_KEY in input_features:
        parts.append(f"{STATE_KEY} {_shape(input_features[STATE_KEY])}")
    if ACTION_KEY in output_features:
        parts.append(f"{ACTION_KEY} {_shape(output_features[ACTION_KEY])}")
    return "; ".join(parts)


def feature_problems(
    input_features: Mapping[str, Any],
    output_features: Mapping[str, Any],
    cameras: Sequence[str],
    joint_names: Sequence[str],
) -> list[str]:
    """Every way the policy's features differ from the configured cameras and joints (empty: they fit)."""
    problems: list[str] = []
    expected = [key[len(IMAGE_PREFIX):] for key in input_features if key.startswith(IMAGE_PREFIX)]
    unknown = [c for c in cameras if c not in expected]
    if unknown:
        problems.append(f"cameras {unknown} are not inputs of the policy (it reads {sorted(expected)})")
    unfed = sorted(set(expected) - set(cameras))
    if unfed:
        problems.append(f"the policy also needs cameras {unfed}, which are not configured")
    if len(expected) != len(cameras):
        problems.append(f"the policy reads {len(expected)} camera(s), {len(cameras)} are configured")
    for camera in expected:
        shape = _shape(input_features[IMAGE_PREFIX + camera])
        if len(shape) != 3:
            problems.append(f"image input {IMAGE_PREFIX + camera} has shape {shape}; expected (channels, height, width)")
        elif shape[0] != CAMERA_CHANNELS:
            problems.append(
                f"camera {camera!r}: the policy expects {shape[0]}-channel images {shape}, cameras deliver "
                f"{CAMERA_CHANNELS}-channel RGB frames"
            )
    others = [key for key in input_features if not key.startswith(IMAGE_PREFIX) and key != STATE_KEY]
    if others:
        problems.append(f"the policy needs inputs {others}, which vla-edge does not provide")
    joints = len(joint_names)
    for key, features in ((STATE_KEY, input_features), (ACTION_KEY, output_features)):
        if key not in features:
            if key == ACTION_KEY:
                problems.append(f"the policy has no {ACTION_KEY!r} output (outputs: {list(output_features)})")
            continue
        shape = _shape(features[key])
        if len(shape) != 1:
            problems.append(f"{key} has shape {shape}; vla-edge needs one value per joint, shape ({joints},)")
        elif math.prod(shape) != joints:
            problems.append(f"{key} has {math.prod(shape)} values but {joints} joints are configured: {list(joint_names)}")
    return problems


def check_features(
    input_features: Mapping[str, Any],
    output_features: Mapping[str, Any],
    cameras: Sequence[str],
    joint_names: Sequence[str],
    source: object,
) -> None:
    """Raise PolicyError, listing expected vs configured, unless the policy fits these cameras and joints."""
    problems = feature_problems(input_features, output_features, cameras, joint_names)
    if problems:
        raise PolicyError(
            f"policy {source} does not match the configuration: " + "; ".join(problems) + ". "
            f"Policy expects: {describe_features(input_features, output_features)}. "
            f"Configured: cameras {list(cameras)}, {len(joint_names)} jointNames {list(joint_names)}. "
            "Fix the cameras/jointNames configuration or deploy a policy trained for this robot."
        )
