"""Load a LeRobot pretrained policy directory and run it, with LeRobot's own code.

A policy directory is what ``policy.save_pretrained(dir)`` plus
``preprocessor.save_pretrained(dir)`` / ``postprocessor.save_pretrained(dir)`` write:
``config.json``, ``model.safetensors``, ``policy_preprocessor.json``,
``policy_postprocessor.json`` and the processors' ``*.safetensors`` state files.

Loading never touches the network: everything is read from the directory
(``local_files_only``), weights come from safetensors only, and a processor step may
only name a class that LeRobot registered or that lives in the ``lerobot`` package.

torch and lerobot are imported inside the functions, so importing this module is cheap.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from vla_edge.errors import PolicyError

if TYPE_CHECKING:  # pragma: no cover - typing only
    import torch

log = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
PREPROCESSOR_FILE = "policy_preprocessor.json"
POSTPROCESSOR_FILE = "policy_postprocessor.json"
REQUIRED_FILES = (CONFIG_FILE, WEIGHTS_FILE, PREPROCESSOR_FILE, POSTPROCESSOR_FILE)

IMAGE_PREFIX = "observation.images."
STATE_KEY = "observation.state"
ACTION_KEY = "action"

_EXPORT_HINT = (
    "A policy directory is written by policy.save_pretrained(dir) together with "
    "preprocessor.save_pretrained(dir) and postprocessor.save_pretrained(dir) "
    "(lerobot-train checkpoints contain all of them under pretrained_model/)."
)


def resolve_device(requested: str) -> str:
    """Map a requested torch device to one this machine has; CUDA/MPS fall back to CPU with a warning."""
    import torch

    wanted = requested.strip().lower()
    if wanted == "cpu":
        return "cpu"
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
    raise PolicyError(f"unknown device {requested!r}; use 'cpu', 'cuda', 'cuda:<index>' or 'mps'")


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


def load_policy(path: Path | str, device: str = "cpu", *, strict: bool = True) -> LoadedPolicy:
    """Load the policy in ``path`` with LeRobot's classes and processors, ready for inference.

    ``strict`` (default) refuses weights files that miss or add parameters, so a
    mismatched checkpoint fails here instead of running with random weights.
    """
    path = Path(path).expanduser().resolve()
    check_policy_dir(path)
    chosen = resolve_device(device)
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
    config.device = chosen
    if getattr(config, "pretrained_backbone_weights", None):
        # Every weight comes from model.safetensors (strict load); never fetch backbone weights.
        config.pretrained_backbone_weights = None
    try:
        policy_class = get_policy_class(config.type)
    except (ValueError, ImportError) as exc:
        raise PolicyError(
            f"policy type {config.type!r} in {path / CONFIG_FILE} is not available in LeRobot: {exc}"
        ) from exc
    try:
        policy = policy_class.from_pretrained(path, config=config, local_files_only=True, strict=strict)
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
    loaded = LoadedPolicy(path, policy, preprocessor, postprocessor, chosen)
    log.info(
        "loaded %s policy from %s on %s: inputs %s, outputs %s",
        config.type,
        path,
        chosen,
        {k: tuple(v.shape) for k, v in loaded.input_features.items()},
        {k: tuple(v.shape) for k, v in loaded.output_features.items()},
    )
    return loaded


class LoadedPolicy:
    """A LeRobot policy with its pre/post processors: observation in, action chunk out."""

    def __init__(self, path: Path, policy: Any, preprocessor: Any, postprocessor: Any, device: str) -> None:
        self.path = path
        self.policy = policy
        self.preprocessor = preprocessor
        self.postprocessor = postprocessor
        self.device = device
        self.config = policy.config

    @property
    def policy_type(self) -> str:
        return str(self.config.type)

    @property
    def input_features(self) -> dict[str, Any]:
        """LeRobot ``PolicyFeature`` of every input, keyed like ``observation.images.front``."""
        return dict(self.config.input_features or {})

    @property
    def output_features(self) -> dict[str, Any]:
        return dict(self.config.output_features or {})

    @property
    def camera_names(self) -> list[str]:
        """Camera names the policy reads, from its ``observation.images.<name>`` inputs."""
        return [key[len(IMAGE_PREFIX) :] for key in self.input_features if key.startswith(IMAGE_PREFIX)]

    def image_shape(self, camera: str) -> tuple[int, int, int]:
        """(channels, height, width) the policy expects for ``camera``."""
        shape = tuple(int(v) for v in self.input_features[IMAGE_PREFIX + camera].shape)
        if len(shape) != 3:
            raise PolicyError(
                f"image input {IMAGE_PREFIX + camera} has shape {shape}; expected (channels, height, width)"
            )
        return shape  # type: ignore[return-value]

    @property
    def state_dim(self) -> int | None:
        feature = self.input_features.get(STATE_KEY)
        return None if feature is None else int(math.prod(feature.shape))

    @property
    def action_dim(self) -> int:
        feature = self.output_features.get(ACTION_KEY)
        if feature is None:
            raise PolicyError(
                f"policy in {self.path} has no {ACTION_KEY!r} output; outputs are {list(self.output_features)}"
            )
        return int(math.prod(feature.shape))

    @property
    def n_action_steps(self) -> int | None:
        value = getattr(self.config, "n_action_steps", None)
        return int(value) if value else None

    def check_io(self, cameras: Sequence[str], joint_names: Sequence[str]) -> None:
        """Raise PolicyError unless the policy reads exactly these cameras and these joints."""
        problems = []
        expected = set(self.camera_names)
        unknown = [c for c in cameras if c not in expected]
        if unknown:
            problems.append(f"cameras {unknown} are not inputs of the policy (it reads {sorted(expected)})")
        unfed = sorted(expected - set(cameras))
        if unfed:
            problems.append(f"the policy also needs cameras {unfed}, which are not configured")
        for camera in cameras:
            if camera in expected and self.image_shape(camera)[0] not in (1, 3):
                problems.append(
                    f"camera {camera!r} input has {self.image_shape(camera)[0]} channels; only 1 or 3 are supported"
                )
        others = [key for key in self.input_features if not key.startswith(IMAGE_PREFIX) and key != STATE_KEY]
        if others:
            problems.append(f"the policy needs inputs {others}, which vla-edge does not provide")
        if self.state_dim is not None and self.state_dim != len(joint_names):
            problems.append(
                f"{STATE_KEY} has {self.state_dim} values but {len(joint_names)} joints are configured: "
                f"{list(joint_names)}"
            )
        if ACTION_KEY not in self.output_features:
            problems.append(f"the policy has no {ACTION_KEY!r} output")
        elif self.action_dim != len(joint_names):
            problems.append(
                f"{ACTION_KEY} has {self.action_dim} values but {len(joint_names)} joints are configured: "
                f"{list(joint_names)}"
            )
        if problems:
            raise PolicyError(
                f"policy {self.path} does not match the configuration: "
                + "; ".join(problems)
                + ". Fix the cameras/jointNames configuration or deploy a policy trained for this robot."
            )

    def build_observation(
        self, images: Mapping[str, np.ndarray], state: Sequence[float] | np.ndarray, task: str = ""
    ) -> dict[str, Any]:
        """LeRobot observation dict: images CHW float32 in [0, 1] at the policy's size, state float32."""
        import torch

        observation: dict[str, Any] = {}
        for camera in self.camera_names:
            if camera not in images:
                raise PolicyError(f"no image for camera {camera!r}")
            channels, height, width = self.image_shape(camera)
            pixels = _fit_image(images[camera], channels, height, width)
            chw = np.ascontiguousarray(pixels.transpose(2, 0, 1), dtype=np.float32) / np.float32(255.0)
            observation[IMAGE_PREFIX + camera] = torch.from_numpy(chw)
        if self.state_dim is not None:
            values = np.asarray(state, dtype=np.float32).reshape(-1)
            if values.shape[0] != self.state_dim:
                raise PolicyError(f"state has {values.shape[0]} values; the policy needs {self.state_dim}")
            observation[STATE_KEY] = torch.from_numpy(values.copy())
        observation["task"] = task
        return observation

    def predict_chunk(self, observation: dict[str, Any]) -> np.ndarray:
        """preprocessor → ``predict_action_chunk`` → postprocessor; returns (T, action_dim) float32."""
        import torch

        try:
            with torch.inference_mode():
                batch = self.preprocessor(observation)
                actions = self.policy.predict_action_chunk(batch)
                actions = self.postprocessor(actions)
        except NotImplementedError as exc:
            raise PolicyError(f"{self.policy_type} policies do not implement predict_action_chunk") from exc
        except Exception as exc:  # torch raises RuntimeError/ValueError/... from deep inside the model
            raise PolicyError(f"{self.policy_type} inference failed: {_brief(exc)}") from exc
        return self._to_chunk(actions)

    def _to_chunk(self, actions: torch.Tensor) -> np.ndarray:
        array = actions.detach().to("cpu").float().numpy()
        if array.ndim == 3:
            array = array[0]
        if array.ndim != 2 or array.shape[1] != self.action_dim:
            raise PolicyError(
                f"policy returned actions of shape {tuple(actions.shape)}; expected (1, T, {self.action_dim})"
            )
        if self.n_action_steps:
            array = array[: self.n_action_steps]
        if not np.isfinite(array).all():
            raise PolicyError("policy returned non-finite actions (NaN/inf); refusing to publish them")
        return np.ascontiguousarray(array, dtype=np.float32)


def _brief(exc: BaseException, limit: int = 400) -> str:
    """One exception as short text: LeRobot/torch messages can list hundreds of tensors."""
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= limit else text[:limit] + " [...]"


def _fit_image(image: np.ndarray, channels: int, height: int, width: int) -> np.ndarray:
    """HxWxC uint8 at the policy's size and channel count (OpenCV resize only when needed)."""
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.dtype != np.uint8:
        raise PolicyError(f"camera images must be HxWxC uint8, got {image.dtype} {image.shape}")
    if image.shape[0] != height or image.shape[1] != width:
        import cv2

        shrinking = image.shape[0] > height or image.shape[1] > width
        resized = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
        image = resized if resized.ndim == 3 else resized[:, :, None]
    if image.shape[2] == channels:
        return np.ascontiguousarray(image)
    if image.shape[2] == 1 and channels == 3:
        return np.ascontiguousarray(np.repeat(image, 3, axis=2))
    if image.shape[2] == 3 and channels == 1:
        weights = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # RGB luma
        return np.ascontiguousarray((image.astype(np.float32) @ weights).round().astype(np.uint8)[:, :, None])
    raise PolicyError(f"cannot convert a {image.shape[2]}-channel image to the {channels} channels the policy expects")
