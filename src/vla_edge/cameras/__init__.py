"""Camera sources: a tiny ``connect / read / disconnect`` interface and its implementations."""

from vla_edge.cameras.base import Camera, CameraConfig, make_camera

__all__ = ["Camera", "CameraConfig", "make_camera"]
