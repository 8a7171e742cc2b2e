"""Camera sources: a small ``connect / read / disconnect`` interface and its implementations.

``source`` in :class:`CameraConfig` picks one: ``synthetic`` (no hardware), ``device``
(V4L2/USB), ``stream`` (RTSP/HTTP), ``file`` (a video played in a loop) or ``images``
(a folder of images). :func:`make_camera` builds it; ``vla_edge.cameras.discovery`` has the
tooling behind ``vla-edge camera list`` and ``vla-edge camera snap``.
"""

from vla_edge.cameras.base import (
    Camera,
    CameraConfig,
    Capability,
    SourceExhausted,
    make_camera,
)

__all__ = ["Camera", "CameraConfig", "Capability", "SourceExhausted", "make_camera"]
