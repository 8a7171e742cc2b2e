"""The model-updater component: the one source of the active model, and the orchestrator of its updates.

This module only wires the parts together (each explains its own rules):

* :mod:`.config` what the deployment asks for; a proposed configuration is checked when the
  deployment is validated and rejected with the reason; an accepted one applies live;
* :mod:`.orchestrator` the active model and one change of it at a time, :mod:`.rollout` the
  steps of a rollout, :mod:`.probation` the watch after a switch, :mod:`.sources` fetching;
* :mod:`.channel` ModelCommand out, ModelReport back; :mod:`.reporting` ModelStatus on the bus
  and in AWS IoT Core; :mod:`.deferral` holding Greengrass component updates back.

Lifecycle state: RUNNING, or ERRORED with the reason after a failed rollout or a rollback,
until the next rollout succeeds. Health counters: ``rollouts.started``, ``rollouts.succeeded``,
``rollouts.failed.<reason>``, ``rollouts.rolled_back`` (and ``.<reason>``), ``downloads.bytes``,
``updates.deferred``/``updates.allowed``, ``iot_core.published``/``iot_core.denied``; metrics:
the last rollout's ``download_mbps`` and ``verify_to_serving_s``, ``probation_remaining_s``.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any

from vla_edge import messages
from vla_edge.bus.base import Bus
from vla_edge.components.base import Component, configuration_problem
from vla_edge.components.model_updater.channel import InferenceChannel
from vla_edge.components.model_updater.config import ModelUpdaterConfig
from vla_edge.components.model_updater.deferral import ArmActivity, UpdateDeferral
from vla_edge.components.model_updater.orchestrator import Orchestrator
from vla_edge.components.model_updater.reporting import StatusReporter
from vla_edge.components.model_updater.sources import ModelSources
from vla_edge.updater.store import ModelStore

LOOP_S = 0.1
INFERENCE_HEALTH = messages.TOPIC_HEALTH.format(component="inference")


class ModelUpdaterComponent(Component[ModelUpdaterConfig]):
    name = "model_updater"

    def __init__(self, bus: Bus, config: ModelUpdaterConfig, *, clock: Callable[[], float] = time.monotonic,
                 sources: ModelSources | None = None, thing_name: str | None = None) -> None:
        """``clock`` (monotonic seconds) times probation, status repeats and JointState freshness; ``sources``
        replaces how models are fetched (tests: an S3 client on a test server); ``thing_name`` replaces
        ``AWS_IOT_THING_NAME``, read here, at start, not at import."""
        super().__init__(bus, config)
        self.clock = clock
        self.store = ModelStore(config.store_root())
        self.log.info("model store: %s", self.store.root)
        self.thing_name = thing_name if thing_name is not None else os.environ.get("AWS_IOT_THING_NAME")
        self.reporter = StatusReporter(self.router, bus, self.counters, self.log, self._iot_topic(config),
                                       lambda: self.config.report_period_s, clock)
        self.channel = InferenceChannel(self.router.publish, self.log)
        self.orchestrator = Orchestrator(self.store, sources or ModelSources(), self.channel,
                                         self.reporter.publish, self.counters, self.log, clock, lambda: self.config,
                                         self.set_state)
        self.arm = ArmActivity(clock)
        self.deferral = UpdateDeferral(bus, self.arm, self.orchestrator.busy, lambda: self.config.defer_recheck_s,
                                       lambda: self.config.defer_component_updates, self.counters, self.log)
        self._config_changed = threading.Event()
        self._subscriptions = [
            bus.subscribe_to_validate_configuration_updates(self.validate_configuration),
            bus.subscribe_to_configuration_update(lambda _path: self._config_changed.set()),
            bus.subscribe_to_component_updates(self.deferral.on_event),
        ]
        self.router.subscribe(messages.TOPIC_MODEL_REPORT, self.orchestrator.on_report, messages.ModelReport)
        self.router.subscribe(INFERENCE_HEALTH, self.orchestrator.on_health, messages.ComponentHealth)
        self.router.subscribe(messages.TOPIC_JOINT_STATE, self.arm.on_joint_state, messages.JointState)

    def _iot_topic(self, config: ModelUpdaterConfig) -> str | None:
        topic = config.iot_topic_for(self.thing_name)
        if topic is None and config.iot_topic:
            self.log.warning("AWS_IOT_THING_NAME is not set, so iotTopic %s names no thing: the model status is not "
                             "sent to AWS IoT Core (the nucleus sets it for its components)", config.iot_topic)
        elif topic is not None:
            self.log.info("model status goes to AWS IoT Core topic %s", topic)
        return topic

    # --- configuration -------------------------------------------------------------------------

    @staticmethod
    def validate_configuration(proposed: dict[str, Any]) -> str | None:
        """Deployment-time check: ``None`` accepts, a string is the reason for rejecting."""
        return configuration_problem(ModelUpdaterConfig, proposed)

    def _apply_configuration_change(self) -> None:
        self._config_changed.clear()
        new = self.changed_config()
        if new is None:
            return
        if new.store_root() != self.config.store_root():
            self.log.warning("storeDir changes to %s after a restart; the store in %s stays in use until then",
                             new.store_root(), self.store.root)
        if new.iot_topic != self.config.iot_topic:
            self.reporter.iot_topic = self._iot_topic(new)
        if new.defer_component_updates != self.config.defer_component_updates:
            self.log.info("component updates are %s deferred from now on",
                          "" if new.defer_component_updates else "no longer")
        self.config = new
        self.orchestrator.set_desired(new.desired())
        self.counters.add("config_applied")
        self.log.info("configuration applied live; desired model %s", new.desired().describe())

    # --- run -----------------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        self.set_state("RUNNING")
        self.orchestrator.start()
        try:
            while not stop.wait(LOOP_S):
                if self._config_changed.is_set():
                    self._apply_configuration_change()
                self.orchestrator.tick()
                self.reporter.tick()
                self.publish_health()
        finally:
            self.state = "STOPPING"
            self.orchestrator.stop()

    def metrics(self) -> dict[str, float | None]:
        return self.orchestrator.metrics()

    def close(self) -> None:
        for subscription in self._subscriptions:
            subscription.close()
        super().close()
