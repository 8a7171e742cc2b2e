"""Reports the active model (name, version, sha256) on the model-status topic.

The digest covers every file of the model directory, so a fleet operator can tell
byte-identical models apart from merely same-named ones. Hashing a large model is
slow, so it is redone only when a file's size or modification time changes.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from vla_edge import messages
from vla_edge.bus.base import Bus
from vla_edge.components.base import Component
from vla_edge.components.model_updater.config import ModelUpdaterConfig
from vla_edge.errors import BusError, ConfigurationError
from vla_edge.models import read_model_ref, resolve_model_path

Fingerprint = tuple[tuple[str, int, int], ...]


def fingerprint(path: Path) -> Fingerprint:
    """Cheap change detector: (relative path, size, mtime_ns) of every file."""
    if not path.is_dir():
        return ()
    return tuple(
        (p.relative_to(path).as_posix(), p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(path.rglob("*"))
        if p.is_file()
    )


class ModelUpdaterComponent(Component[ModelUpdaterConfig]):
    name = "model_updater"

    def __init__(self, bus: Bus, config: ModelUpdaterConfig) -> None:
        super().__init__(bus, config)
        cache = Path(config.cache_dir).expanduser() if config.cache_dir else None
        self.model_path = resolve_model_path(config.model_path, cache)
        self._seen: Fingerprint | None = None
        self._status: messages.ModelStatus | None = None

    def run(self, stop: threading.Event) -> None:
        self.set_state("RUNNING")
        next_report = 0.0
        while not stop.is_set():
            self.refresh()
            if time.monotonic() >= next_report and self._status is not None:
                self._publish_status()
                next_report = time.monotonic() + self.config.report_period_s
            self.publish_health()
            stop.wait(0.5)

    def refresh(self) -> messages.ModelStatus:
        """Re-read the model identity if its files changed; returns the current status."""
        current = fingerprint(self.model_path)
        if current == self._seen and self._status is not None:
            return self._status
        self._seen = current
        try:
            ref = read_model_ref(self.model_path)
        except ConfigurationError as exc:
            status = messages.ModelStatus(t=time.time(), state="none", path=str(self.model_path), detail=str(exc))
        else:
            status = messages.ModelStatus(t=time.time(), state="active", model=ref, path=str(self.model_path))
            self.log.info("active model %s %s sha256=%s", ref.name, ref.version, ref.sha256)
        changed = self._status is None or (self._status.state, self._status.model) != (status.state, status.model)
        self._status = status
        if changed:
            self._publish_status()
        return status

    def _publish_status(self) -> None:
        assert self._status is not None
        status = self._status.model_copy(update={"t": time.time()})
        try:
            self.router.publish(status)
        except BusError as exc:
            self.counters.add("publish_errors")
            self.log.warning("model status not published: %s", exc)
