"""A loaded LeRobot policy: camera images and joint positions in, one action chunk out.

Every policy is run through ``predict_action_chunk`` between its own pre- and
post-processors, as LeRobot's asynchronous inference does. One thing differs by policy:

Observation history
    Diffusion Policy (and VQ-BeT, TD-MPC) condition on the last ``n_obs_steps``
    observations, which they keep in ``policy._queues``; their ``predict_action_chunk``
    reads those queues and ignores the batch's values. LeRobot fills the queues in
    ``select_action``, once per control step, so consecutive entries are one step of the
    dataset's frame rate apart. vla-edge runs one inference per chunk, far less often, so
    it must not leave the previous inference's observation in the queue (it would be
    seconds old, not one step). Instead each inference rebuilds the queues from
    ``history`` (the observations one, two, ... ``actionDt`` before the current one, which
    the inference component reads from the camera rings and its joint-state history) and
    the current observation, exactly as ``select_action`` stacks them. With fewer history
    entries than needed, LeRobot's own start-of-episode rule applies: the oldest
    observation is repeated. ACT, SmolVLA and the pi family take one observation and keep
    no observation queue.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from vla_edge.errors import PolicyError
from vla_edge.policies.checks import (
    ACTION_KEY,
    IMAGE_PREFIX,
    STATE_KEY,
    check_features,
    needs_language,
)
from vla_edge.policies.speed import Compiled, autocast, own_dtype_field

if TYPE_CHECKING:  # pragma: no cover - typing only
    import torch

log = logging.getLogger(__name__)

STACKED_IMAGES_KEY = "observation.images"
"""Where Diffusion/VQ-BeT keep all cameras stacked, in their observation queue."""


class LoadedPolicy:
    """A LeRobot policy with its pre/post processors: observation in, action chunk out."""

    def __init__(
        self,
        path: Path,
        policy: Any,
        preprocessor: Any,
        postprocessor: Any,
        device: str,
        *,
        dtype: str = "float32",
        compiled: Compiled | None = None,
    ) -> None:
        self.path = path
        self.policy = policy
        self.preprocessor = preprocessor
        self.postprocessor = postprocessor
        self.device = device
        self.dtype = dtype
        """Effective precision (float32, float16 or bfloat16)."""
        self._compiled = compiled
        self.config = policy.config
        queues = getattr(policy, "_queues", None)
        self._queued = isinstance(queues, dict) and any(key != ACTION_KEY for key in queues)

    @property
    def policy_type(self) -> str:
        return str(self.config.type)

    @property
    def compiled(self) -> bool:
        """True while inference runs through ``torch.compile`` (False after a fallback to eager)."""
        return self._compiled is not None

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

    @property
    def observation_steps(self) -> int:
        """Observations one inference conditions on: ``n_obs_steps`` for policies with an observation queue, else 1."""
        return max(1, int(getattr(self.config, "n_obs_steps", 1) or 1)) if self._queued else 1

    @property
    def needs_language(self) -> bool:
        """True for language-conditioned policies (SmolVLA, pi0, ...): they need a task instruction."""
        steps = getattr(self.preprocessor, "steps", []) or []
        names = [str(getattr(type(step), "_registry_name", type(step).__name__)) for step in steps]
        return needs_language(self.policy_type, names)

    def check_io(self, cameras: Sequence[str], joint_names: Sequence[str]) -> None:
        """Raise PolicyError unless the policy reads exactly these cameras and these joints."""
        check_features(self.input_features, self.output_features, cameras, joint_names, self.path)

    def build_observation(
        self, images: Mapping[str, np.ndarray], state: Sequence[float] | np.ndarray, task: str = ""
    ) -> dict[str, Any]:
        """LeRobot observation dict: images CHW float32 in [0, 1] at the policy's size, state float32, task."""
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

    def synthetic_observation(self, task: str = "", seed: int = 0) -> dict[str, Any]:
        """An observation of the right shapes (random pixels, joints at zero), for warm-up."""
        rng = np.random.default_rng(seed)
        images = {}
        for camera in self.camera_names:
            channels, height, width = self.image_shape(camera)
            images[camera] = rng.integers(0, 256, (height, width, channels), dtype=np.uint8)
        return self.build_observation(images, np.zeros(self.state_dim or 0, np.float32), task)

    def warm_up(self, count: int, task: str = "") -> list[float]:
        """Run ``count`` inferences on synthetic observations; their latencies in ms.

        The first inference pays for lazy initialisation (memory pools, kernel selection,
        compilation with ``compile``); a failing compile or reduced precision falls back here,
        before any real observation. A policy that cannot run at all raises PolicyError.
        """
        latencies = []
        for index in range(count):
            observation = self.synthetic_observation(task, seed=index)
            history = [self.synthetic_observation(task, seed=index) for _ in range(self.observation_steps - 1)]
            started = time.perf_counter()
            if history:
                self.predict_chunk(observation, history=history)
            else:
                self.predict_chunk(observation)
            latencies.append((time.perf_counter() - started) * 1000.0)
        return latencies

    def predict_chunk(self, observation: dict[str, Any], history: Sequence[dict[str, Any]] = ()) -> np.ndarray:
        """preprocessor → ``predict_action_chunk`` → postprocessor; returns (T, action_dim) float32.

        ``history``: earlier observations, oldest first, one ``actionDt`` apart, for policies
        with ``observation_steps`` > 1 (see the module docstring); ignored by the others.
        """
        while True:
            try:
                actions = self._run(observation, history)
                break
            except NotImplementedError as exc:
                raise PolicyError(f"{self.policy_type} policies do not implement predict_action_chunk") from exc
            except Exception as exc:  # torch raises RuntimeError/ValueError/... from deep inside the model
                if not self._fall_back(exc):
                    raise PolicyError(f"{self.policy_type} inference failed: {_brief(exc)}") from exc
        return self._to_chunk(actions)

    def _run(self, observation: dict[str, Any], history: Sequence[dict[str, Any]]) -> torch.Tensor:
        import torch

        with torch.inference_mode():
            with autocast(self.device, "float32" if self._precision_in_model else self.dtype):
                batch = self.preprocessor(observation)
                if self._queued:
                    older = list(history)[-(self.observation_steps - 1) :] if self.observation_steps > 1 else []
                    batch = self._fill_queues([self.preprocessor(item) for item in older], batch)
                actions = self.policy.predict_action_chunk(batch)
            return self.postprocessor(actions)

    def _fall_back(self, exc: Exception) -> bool:
        """After a failed inference: drop compile, then reduced precision; False when nothing is left to drop."""
        if self._compiled is not None:
            log.warning("compiled inference failed (%s); falling back to eager execution", _brief(exc, 300))
            self._compiled.revert()
            self._compiled = None
            return True
        if self.dtype != "float32" and not self._precision_in_model:
            log.warning("inference in %s failed (%s); falling back to float32", self.dtype, _brief(exc, 300))
            self.dtype = "float32"
            return True
        return False

    @property
    def _precision_in_model(self) -> bool:
        """True when the policy applies the reduced precision itself (pi family, bfloat16): no autocast."""
        return self.dtype == "bfloat16" and own_dtype_field(self.config)

    def _fill_queues(self, older: list[dict[str, Any]], batch: dict[str, Any]) -> dict[str, Any]:
        """Rebuild the policy's observation queues from ``older`` + ``batch``, as ``select_action`` fills them."""
        from lerobot.policies.utils import populate_queues

        self.policy.reset()
        stacked = batch
        for item in [*older, batch]:
            # as select_action does: no "action" key (the preprocessor leaves action=None in the batch)
            stacked = self._stack_images({key: value for key, value in item.items() if key != ACTION_KEY})
            populate_queues(self.policy._queues, stacked, exclude_keys=[ACTION_KEY])
        return stacked

    def _stack_images(self, batch: dict[str, Any]) -> dict[str, Any]:
        import torch

        if STACKED_IMAGES_KEY not in self.policy._queues or not self.config.image_features:
            return batch
        stacked = dict(batch)
        stacked[STACKED_IMAGES_KEY] = torch.stack([batch[key] for key in self.config.image_features], dim=-4)
        return stacked

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
    raise PolicyError(f"cannot convert a {image.shape[2]}-channel image to the {channels} channels the policy expects")
