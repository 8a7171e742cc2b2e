from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from vla_edge.cameras.base import (
    CameraConfig,
    Capability,
    make_camera,
    mismatch_warning,
    redact_url,
)
from vla_edge.cameras.images import ImageFolderCamera
from vla_edge.cameras.opencv import OpenCVCamera
from vla_edge.cameras.synthetic import SyntheticCamera
from vla_edge.components.base import load_config
from vla_edge.components.camera.config import CameraComponentConfig
from vla_edge.errors import ConfigurationError


def test_defaults_are_valid() -> None:
    config = CameraConfig()
    assert (config.name, config.source, config.width, config.height, config.fps) == ("front", "synthetic", 160, 120, 30)
    assert (config.rotation, config.flip, config.loop) == (0, "none", True)
    assert config.image_key == "observation.images.front"


@pytest.mark.parametrize(
    ("raw", "source_type"),
    [
        ({"source": "synthetic"}, SyntheticCamera),
        ({"source": "device", "device": 0}, OpenCVCamera),
        ({"source": "device", "device": "2"}, OpenCVCamera),
        ({"source": "device", "device": "/dev/video1", "fourcc": "MJPG"}, OpenCVCamera),
        ({"source": "device", "device": "/dev/v4l/by-id/usb-Cam_123-video-index0"}, OpenCVCamera),
        ({"source": "stream", "url": "rtsp://user:pw@10.0.0.5:554/stream1", "timeoutS": 2}, OpenCVCamera),
        ({"source": "stream", "url": "https://cam.local/video.mjpg"}, OpenCVCamera),
        ({"source": "file", "path": "/data/demo.mp4", "loop": False}, OpenCVCamera),
        ({"source": "images", "path": "/data/frames"}, ImageFolderCamera),
    ],
)
def test_valid_sources(raw: dict[str, Any], source_type: type) -> None:
    config = CameraConfig.model_validate({"name": "wrist", "rotation": 90, "flip": "both", **raw})
    assert isinstance(make_camera(config), source_type)
    assert config.image_key == "observation.images.wrist"


def test_device_index_given_as_text_becomes_an_int() -> None:
    assert CameraConfig(source="device", device="2").device == 2


INVALID: list[tuple[dict[str, Any], str]] = [
    ({"source": "usb"}, "unknown camera source 'usb'; valid sources: synthetic, device, stream, file, images"),
    ({"source": "0"}, "source: device, device: 0"),
    ({"source": "rtsp://cam/1"}, "source: stream, url: rtsp://cam/1"),
    ({"source": "/data/demo.mp4"}, "source: file, path: /data/demo.mp4"),
    ({"fps": 0}, "greater than 0"),
    ({"fps": -5}, "greater than 0"),
    ({"fps": 500}, "less than or equal to 240"),
    ({"width": 0}, "greater than 0"),
    ({"source": "device"}, "source 'device' needs 'device'"),
    ({"source": "device", "device": "/home/me/video0"}, "is not a camera device"),
    ({"source": "device", "device": -1}, "out of range"),
    ({"source": "stream"}, "source 'stream' needs 'url'"),
    ({"source": "stream", "url": "ftp://cam.local/x"}, "must start with rtsp://, rtsps://, http://, https://"),
    ({"source": "stream", "url": "rtsp://"}, "name a host"),
    ({"source": "file"}, "source 'file' needs 'path'"),
    ({"source": "images"}, "source 'images' needs 'path'"),
    ({"source": "file", "path": "  "}, "path must not be empty"),
    ({"source": "device", "device": 0, "fourcc": "MJPEG"}, "fourcc must be exactly 4"),
    ({"source": "device", "device": 0, "fourcc": "MJ"}, "fourcc must be exactly 4"),
    ({"rotation": 45}, "0, 90, 180 or 270"),
    ({"flip": "diagonal"}, "'none', 'horizontal', 'vertical' or 'both'"),
    ({"source": "device", "device": 0, "url": "rtsp://cam/1"}, "'url' is only used with source 'stream'"),
    ({"source": "stream", "url": "rtsp://cam/1", "fourcc": "MJPG"}, "'fourcc' is only used with source 'device'"),
    ({"source": "synthetic", "path": "/x"}, "'path' is only used with source 'file' or 'images'"),
    ({"source": "device", "device": 0, "loop": False}, "'loop' is only used with source 'file' or 'images'"),
    ({"name": "front camera"}, "should match pattern"),
    ({"resolution": "720p"}, "Extra inputs are not permitted"),
    ({"timeoutS": 0}, "greater than 0"),
]


@pytest.mark.parametrize(("raw", "reason"), INVALID, ids=[str(raw) for raw, _ in INVALID])
def test_invalid_configs_are_rejected_with_their_reason(raw: dict[str, Any], reason: str) -> None:
    with pytest.raises(ValidationError) as caught:
        CameraConfig.model_validate(raw)
    assert reason in str(caught.value)


def test_component_configuration_names_the_camera_key_and_reason() -> None:
    raw = {"cameras": [{"name": "front"}, {"name": "wrist", "source": "stream", "url": "ftp://x/y"}]}
    with pytest.raises(ConfigurationError) as caught:
        load_config(CameraComponentConfig, raw)
    assert "cameras.1" in str(caught.value) and "must start with rtsp://" in str(caught.value)


def test_recipe_keys_are_camel_case() -> None:
    config = load_config(
        CameraComponentConfig,
        {"cameras": [{"name": "wrist", "source": "stream", "url": "rtsp://cam/1", "timeoutS": 2.5, "rotation": 180}]},
    )
    assert config.cameras[0].timeout_s == 2.5 and config.cameras[0].rotation == 180


def test_stream_credentials_are_redacted() -> None:
    assert redact_url("rtsp://admin:secret@10.0.0.5:554/s1") == "rtsp://admin:***@10.0.0.5:554/s1"
    assert redact_url("http://cam.local/video") == "http://cam.local/video"
    config = CameraConfig(source="stream", url="rtsp://admin:secret@10.0.0.5/s1")
    assert "secret" not in config.describe_source()
    with pytest.raises(ConfigurationError) as caught:
        load_config(CameraComponentConfig, {"cameras": [{"source": "stream", "url": "ftp://admin:secret@10.0.0.5/s1"}]})
    assert "admin:***@10.0.0.5" in str(caught.value) and "secret" not in str(caught.value)


def test_mismatch_warning_text() -> None:
    config = CameraConfig(name="wrist", source="device", device=0, width=1280, height=720, fps=30)
    text = mismatch_warning(config, Capability(640, 480, 15.0, "MJPG", "V4L2"), paced=False)
    assert text is not None
    assert text.startswith("camera 'wrist' delivers 640x480 @ 15 fps (MJPG); configured 1280x720 @ 30 fps: ")
    assert "frames will be resized" in text and "rate will be 15 fps" in text
    assert mismatch_warning(config, Capability(1280, 720, 30.0, "MJPG", "V4L2"), paced=False) is None
    faster = mismatch_warning(config, Capability(1280, 720, 60.0, "MJPG", "V4L2"), paced=False)
    assert faster is not None and "dropped to keep 30 fps" in faster


def test_mismatch_warning_accounts_for_rotation() -> None:
    config = CameraConfig(width=48, height=64, rotation=90)
    assert mismatch_warning(config, Capability(64, 48, 30.0), paced=True) is None
    text = mismatch_warning(config, Capability(64, 48, 15.0), paced=True)
    assert text is not None and "plays at 30 fps, 2x its recorded rate" in text
