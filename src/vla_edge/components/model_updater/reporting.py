"""The model status, on the local bus and in AWS IoT Core.

Every change is published at once, and the latest status again every ``reportPeriodS``:
a component that starts later (an actuator after a restart) learns the active model
within one period, and the fleet sees a device that went quiet. The same status goes to
the device's IoT Core topic (QoS 1 on change, QoS 0 for the periodic repeat). A recipe
that does not grant PublishToIoTCore is logged once and counted; the local status goes on.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from vla_edge import messages
from vla_edge.bus.base import Bus
from vla_edge.components.base import Counters, MessageRouter
from vla_edge.errors import AccessDenied, BusError


class StatusReporter:
    def __init__(self, router: MessageRouter, bus: Bus, counters: Counters, log: logging.Logger,
                 iot_topic: str | None, period_s: Callable[[], float], clock: Callable[[], float]) -> None:
        self.router = router
        self.bus = bus
        self.counters = counters
        self.log = log
        self.iot_topic = iot_topic
        self._period_s = period_s
        self._clock = clock
        self._lock = threading.Lock()
        self._current: messages.ModelStatus | None = None
        self._next_repeat = 0.0
        self._denied_logged = False

    @property
    def current(self) -> messages.ModelStatus | None:
        with self._lock:
            return self._current

    def publish(self, status: messages.ModelStatus) -> None:
        """Publish a new status now (it becomes the one repeated)."""
        status = status.model_copy(update={"t": time.time()})
        with self._lock:
            self._current = status
            self._next_repeat = self._clock() + self._period_s()
        if status.state in ("failed", "rolled_back"):
            self.log.warning("model status %s: %s", status.state, status.detail)
        else:
            self.log.info("model status %s%s%s", status.state, _names(status), f": {status.detail}" if status.detail else "")
        self._send(status, qos=1)

    def tick(self) -> None:
        """Repeat the latest status if a period has passed since it was last sent."""
        with self._lock:
            status = self._current
            if status is None or self._clock() < self._next_repeat:
                return
            self._next_repeat = self._clock() + self._period_s()
            status = status.model_copy(update={"t": time.time()})
        self._send(status, qos=0)

    def _send(self, status: messages.ModelStatus, qos: int) -> None:
        try:
            self.router.publish(status)
        except BusError as exc:
            self.counters.add("publish_errors")
            self.log.warning("model status not published on the local bus: %s", exc)
        if self.iot_topic is None:
            return
        try:
            self.bus.publish_to_iot_core(self.iot_topic, status.to_json(), qos=qos)  # type: ignore[arg-type]
        except AccessDenied as exc:
            self.counters.add("iot_core.denied")
            if not self._denied_logged:
                self._denied_logged = True
                self.log.warning("model status not sent to AWS IoT Core (%s); grant aws.greengrass#PublishToIoTCore "
                                 "on %s in the recipe's aws.greengrass.ipc.mqttproxy policy. Not logged again.",
                                 exc, self.iot_topic)
        except BusError as exc:
            self.counters.add("iot_core.errors")
            self.log.warning("model status not sent to AWS IoT Core topic %s: %s", self.iot_topic, exc)
        else:
            self.counters.add("iot_core.published")


def _names(status: messages.ModelStatus) -> str:
    parts = []
    if status.model is not None:
        parts.append(f" {status.model.name} {status.model.version}")
    if status.next_model is not None:
        parts.append(f" -> {status.next_model.name} {status.next_model.version}")
    if status.hold:
        parts.append(" (arm holds)")
    return "".join(parts)
