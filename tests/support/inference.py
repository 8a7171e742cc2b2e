"""Driving the inference component in tests: camera rings, joint states, and a component on a bus.

* :class:`Rings` writes frames into real shared-memory rings (as the camera component does)
  and returns the ``FrameReady`` announcing each; the ``rings`` fixture (import :func:`rings_fixture`)
  gives a test its own, closed afterwards.
* :func:`joints` makes a ``JointState``.
* :class:`Harness` runs an ``InferenceComponent`` on an in-memory bus and collects what it publishes
  (chunks, health, model reports, and all of them in arrival order in ``events``).
* :func:`command` makes a ``ModelCommand``; :meth:`Harness.drive_until` runs the loop's passes on the
  test thread until a condition holds (a stage runs on the component's own worker meanwhile).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from vla_edge import messages
from vla_edge.bus.memory import InMemoryBroker, InMemoryBus
from vla_edge.cameras.ring import FrameRing
from vla_edge.components.base import load_config
from vla_edge.components.inference.component import InferenceComponent
from vla_edge.components.inference.config import SO101_JOINTS, InferenceConfig

JOINTS = list(SO101_JOINTS)


class Rings:
    """One shared-memory ring per camera in ``directory``; :meth:`close` removes them."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._rings: dict[str, FrameRing] = {}

    def frame(
        self,
        camera: str = "front",
        shape: tuple[int, int] = (120, 160),
        age_s: float = 0.0,
        seq: int = 1,
        t_capture: float | None = None,
        image: np.ndarray | None = None,
    ) -> messages.FrameReady:
        """Write an image (random from ``seq`` unless given) into ``camera``'s ring and announce it."""
        if image is None:
            image = np.random.default_rng(seq).integers(0, 256, (*shape, 3), dtype=np.uint8)
        ring = self._rings.get(camera)
        if ring is None or ring.shape[:2] != shape:
            if ring is not None:
                ring.close()
            ring = self._rings[camera] = FrameRing.create(self.directory, camera, *shape)
        t_capture = time.time() - age_s if t_capture is None else t_capture
        written = ring.write(image, t_capture)
        return messages.FrameReady(
            camera=camera, seq=written.seq, t_capture=t_capture, height=shape[0], width=shape[1],
            slot=written.slot, segment=str(ring.path),
        )

    def close(self) -> None:
        for ring in self._rings.values():
            ring.close()
        self._rings.clear()


@pytest.fixture(name="rings")
def rings_fixture(tmp_path: Path) -> Iterator[Rings]:
    """Rings in the test's ``frames`` directory; closed after the test."""
    rings = Rings(tmp_path / "frames")
    yield rings
    rings.close()


def joints(
    names: list[str] | None = None, age_s: float = 0.0, positions: list[float] | None = None, t: float | None = None
) -> messages.JointState:
    names = names or JOINTS
    positions = positions if positions is not None else [float(i) for i in range(len(names))]
    return messages.JointState(t=time.time() - age_s if t is None else t, names=names, positions=positions)


def command(action: str, model: messages.ModelRef, path: Path | str = "", **fields: Any) -> messages.ModelCommand:
    return messages.ModelCommand(t=time.time(), action=action, model=model, path=str(path), **fields)  # type: ignore[arg-type]


class Harness:
    """A component on its own bus, a second bus to feed it, and everything it published.

    ``switching``: keyword arguments for the component's ModelSwitcher (validator, loader, free memory).
    """

    def __init__(
        self, broker: InMemoryBroker, policy: Any, frame_dir: Path, switching: dict[str, Any] | None = None,
        **config: Any,
    ) -> None:
        self.bus: InMemoryBus = broker.bus()
        self.config = load_config(InferenceConfig, {"frameDir": str(frame_dir), **config})
        self.component = InferenceComponent(self.bus, self.config, policy=policy, **(switching or {}))
        self.feeder = broker.bus()
        self.chunks: list[messages.ActionChunk] = []
        self.health: list[messages.ComponentHealth] = []
        self.reports: list[messages.ModelReport] = []
        self.events: list[messages.Message] = []
        self._lock = threading.Lock()
        self.feed: Callable[[], None] | None = None
        self.feeder.subscribe(messages.TOPIC_ACTION_CHUNK, self._collect)
        self.feeder.subscribe(messages.TOPIC_HEALTH.format(component="inference"), self._collect)
        self.feeder.subscribe(messages.TOPIC_MODEL_REPORT, self._collect)

    def _collect(self, topic: str, payload: Any) -> None:
        message = messages.decode(topic, payload)
        with self._lock:  # reports come from the stage worker too
            self.events.append(message)
            if isinstance(message, messages.ActionChunk):
                self.chunks.append(message)
            elif isinstance(message, messages.ComponentHealth):
                self.health.append(message)
            elif isinstance(message, messages.ModelReport):
                self.reports.append(message)

    def report(self, state: str, request_id: str | None = None) -> messages.ModelReport | None:
        """The latest model report in ``state`` (for ``request_id`` when given)."""
        with self._lock:
            found = [r for r in self.reports if r.state == state and (request_id is None or r.request_id == request_id)]
        return found[-1] if found else None

    def drive_until(self, condition: Any, timeout: float = 240.0) -> None:
        """Run loop passes (``step``) on this thread until ``condition()``; fail after ``timeout`` seconds.

        ``self.feed``, when set, is called about once a second to keep the inputs fresh.
        """
        deadline = time.monotonic() + timeout
        fed = time.monotonic()
        while not condition():
            assert time.monotonic() < deadline, f"condition not met within {timeout} s; reports: {self.reports}"
            if self.feed is not None and time.monotonic() - fed > 1.0:
                self.feed()
                fed = time.monotonic()
            self.component.step()
            time.sleep(0.01)

    def send(self, *items: messages.Message) -> None:
        for item in items:
            self.feeder.publish(*messages.encode(item))

    @contextmanager
    def running(self) -> Iterator[Harness]:
        stop = threading.Event()
        thread = threading.Thread(target=self.component.run, args=(stop,), name="inference-test")
        thread.start()
        try:
            yield self
        finally:
            stop.set()
            thread.join(30)
            self.component.close()
        assert not thread.is_alive()
