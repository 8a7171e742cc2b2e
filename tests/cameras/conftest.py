"""Real media for the camera tests: video files and image folders written with OpenCV."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from support.media import colour_index, write_video


@pytest.fixture
def video(tmp_path: Path) -> Path:
    return write_video(tmp_path / "clip.avi")


@pytest.fixture
def make_video() -> Callable[..., Path]:
    return write_video


@pytest.fixture
def colour_of() -> Callable[[np.ndarray], int]:
    return colour_index
