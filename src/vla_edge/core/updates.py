"""Component updates: SubscribeToComponentUpdates, DeferComponentUpdate, and a deployment's update step.

What the nucleus does before a deployment changes components whose update policy
is NOTIFY_COMPONENTS (its UpdateSystemPolicyService with the lifecycle IPC agent),
and so what :meth:`ComponentUpdates.negotiate` does:

1. Send a ``preUpdateEvent {deploymentId, isGgcRestarting}`` on every
   SubscribeToComponentUpdates stream, and expect one answer per subscribed component.
2. Wait until every one of them answered, or until the deployment's
   ``componentUpdatePolicy.timeoutInSeconds`` (default 60 s) passed.
3. If an answer was DeferComponentUpdate with ``recheckAfterMs > 0``, sleep the
   largest such recheck and start again at 1. Otherwise (everyone said go with
   ``recheckAfterMs 0``, or some never answered) the update goes ahead.
4. After the update: send ``postUpdateEvent {deploymentId}`` on every stream
   (:meth:`ComponentUpdates.finish`). An update that will not happen after all
   (cancelled, the core stopping) also gets the post-update event, so components
   resume their work, as the nucleus does for a discarded update.

So a component that keeps deferring holds the update back for as long as it
likes, on the nucleus too; ``max_wait_s`` is a local safety net the nucleus does
not have. The nucleus re-checks answers once a second, so a recheck shorter than
that is in effect a second; ``recheck_min_s`` (default 1 s) mirrors that floor
and keeps a component deferring by 1 ms from spinning the loop.

Errors, with the nucleus's wording where it has one: a defer from a component that
never subscribed is InvalidArgumentsError, one with no update waiting for its
answer (never asked, answered already, or too late) is ServiceError "Time limit to
respond to PreComponentUpdateEvent exceeded". Stricter than the nucleus, which
logs and ignores it: a defer naming another deployment is InvalidArgumentsError,
so a component bug shows up here rather than as an update that was never deferred.
SubscribeToComponentUpdates needs no authorization.

Everything except the dataclasses runs on the core's event loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from vla_edge.core.protocol import InvalidArgumentsError, Operation, ServiceError, Stats
from vla_edge.core.rpc import Stream
from vla_edge.errors import CoreError

log = logging.getLogger(__name__)

NS = "aws.greengrass#"
SUBSCRIBE_TO_COMPONENT_UPDATES = NS + "SubscribeToComponentUpdates"
DEFER_COMPONENT_UPDATE = NS + "DeferComponentUpdate"
EVENT_TYPE = NS + "ComponentUpdatePolicyEvents"
DEFAULT_TIMEOUT_S = 60.0
"""The nucleus's default ``componentUpdatePolicy.timeoutInSeconds``."""
DEFAULT_RECHECK_MIN_S = 1.0

Reason = Literal["no_subscribers", "not_deferred", "timeout", "max_wait"]


@dataclass(frozen=True)
class UpdateResponse:
    """One DeferComponentUpdate answer to a pre-update event."""

    component: str
    recheck_after_ms: int
    """0: go ahead; above 0: ask again after this long."""
    message: str | None
    round: int
    """Which pre-update event (1 = the first) it answered."""
    at_s: float
    """Seconds after the update step started."""


@dataclass(frozen=True)
class UpdateOutcome:
    """How a component-update step went: why it proceeded, after how long, and who deferred."""

    deployment_id: str
    reason: Reason
    """``no_subscribers``: nobody to ask; ``not_deferred``: every component answered without
    deferring; ``timeout``: some component did not answer within the timeout and nobody deferred;
    ``max_wait``: components were still deferring when ``max_wait_s`` ran out."""
    waited_s: float
    """From the first pre-update event to the decision to proceed."""
    rounds: int
    """Pre-update events sent to each subscriber (1 + the number of re-asks)."""
    notified: tuple[str, ...] = ()
    """Components that got a pre-update event."""
    unanswered: tuple[str, ...] = ()
    """Components that did not answer the last pre-update event."""
    responses: tuple[UpdateResponse, ...] = field(default_factory=tuple)

    @property
    def deferrals(self) -> tuple[UpdateResponse, ...]:
        """The answers that asked for more time."""
        return tuple(r for r in self.responses if r.recheck_after_ms > 0)

    @property
    def deferred(self) -> bool:
        return bool(self.deferrals)

    def to_dict(self) -> dict[str, Any]:
        document = asdict(self)
        document["notified"], document["unanswered"] = list(self.notified), list(self.unanswered)
        document["responses"] = [asdict(r) for r in self.responses]
        return document

    @classmethod
    def from_dict(cls, document: dict[str, Any]) -> UpdateOutcome:
        return cls(document["deployment_id"], document["reason"], float(document["waited_s"]),
                   int(document["rounds"]), tuple(document.get("notified", ())),
                   tuple(document.get("unanswered", ())),
                   tuple(UpdateResponse(**r) for r in document.get("responses", ())))


class ComponentUpdates:
    """Subscribers to component updates, and the deployment step that asks them."""

    def __init__(self, stats: Stats) -> None:
        self.stats = stats
        self._listeners: dict[str, list[Stream]] = {}
        self._answers: dict[str, asyncio.Future[UpdateResponse]] = {}
        self._active: str | None = None
        self._task: asyncio.Task[Any] | None = None
        self._round = 0
        self._started = 0.0
        self.operations = {
            SUBSCRIBE_TO_COMPONENT_UPDATES: Operation(
                NS + "SubscribeToComponentUpdatesResponse", self.subscribe, streaming=True),
            DEFER_COMPONENT_UPDATE: Operation(NS + "DeferComponentUpdateResponse", self.defer),
        }

    @property
    def active(self) -> str | None:
        """The deployment whose update step is running, if any."""
        return self._active

    def subscribers(self) -> list[str]:
        return sorted(name for name, streams in self._listeners.items() if any(not s.closed for s in streams))

    # -- operations -----------------------------------------------------------------------------------

    def subscribe(self, stream: Stream, request: dict[str, Any]) -> dict[str, Any]:
        streams = self._listeners.setdefault(stream.principal, [])
        streams.append(stream)

        def release() -> None:
            if stream in streams:
                streams.remove(stream)
            if not streams and self._listeners.get(stream.principal) is streams:
                del self._listeners[stream.principal]

        stream.on_close.append(release)
        log.info("%s subscribed to component updates", stream.principal)
        return {}

    def defer(self, stream: Stream, request: dict[str, Any]) -> dict[str, Any]:
        principal = stream.principal
        if not self._listeners.get(principal):
            raise InvalidArgumentsError("Component is not subscribed to component update events")
        deployment_id = request.get("deploymentId")
        if not isinstance(deployment_id, str) or not deployment_id:
            raise InvalidArgumentsError("deploymentId is required: pass the deploymentId of the preUpdateEvent")
        recheck = request.get("recheckAfterMs")
        if recheck is None:
            raise InvalidArgumentsError("recheckAfterMs is required: 0 lets the update proceed, more defers it")
        if isinstance(recheck, bool) or not isinstance(recheck, int) or recheck < 0:
            raise InvalidArgumentsError(f"recheckAfterMs must be a non-negative integer, got {recheck!r}")
        message = request.get("message")
        if message is not None and not isinstance(message, str):
            raise InvalidArgumentsError("message must be a string")
        future = self._answers.get(principal)
        if future is None or future.done():
            raise ServiceError("Time limit to respond to PreComponentUpdateEvent exceeded")
        if deployment_id != self._active:
            raise InvalidArgumentsError(f"deployment {deployment_id} is not the update waiting for an answer "
                                        f"({self._active}); answer with the preUpdateEvent's deploymentId")
        del self._answers[principal]
        at_s = asyncio.get_running_loop().time() - self._started
        future.set_result(UpdateResponse(principal, recheck, message, self._round, round(at_s, 3)))
        if recheck > 0:
            self.stats.update_deferrals += 1
            log.info("%s deferred deployment %s by %d ms: %s", principal, deployment_id, recheck, message or "-")
        else:
            log.info("%s is ready for deployment %s%s", principal, deployment_id, f": {message}" if message else "")
        return {}

    # -- the deployment's update step -----------------------------------------------------------------

    async def negotiate(self, deployment_id: str, *, timeout_s: float = DEFAULT_TIMEOUT_S,
                        recheck_min_s: float = DEFAULT_RECHECK_MIN_S, max_wait_s: float | None = None,
                        ggc_restarting: bool = False) -> UpdateOutcome:
        """Ask subscribers until the update may proceed (see the module docstring); :meth:`finish` must follow.

        If this is cancelled, the post-update event is sent at once: the update will not happen.
        """
        if timeout_s <= 0 or recheck_min_s < 0 or (max_wait_s is not None and max_wait_s < 0):
            raise CoreError("timeout_s must be positive; recheck_min_s and max_wait_s must not be negative")
        if self._active is not None:
            raise CoreError(f"the update step of deployment {self._active} is still running; one at a time")
        self._active = deployment_id
        self._task = asyncio.current_task()
        try:
            return await self._rounds(deployment_id, timeout_s, recheck_min_s, max_wait_s, ggc_restarting)
        except BaseException:
            log.warning("update step of deployment %s ended early; telling subscribers it will not happen",
                        deployment_id)
            self.finish(deployment_id)
            raise
        finally:
            self._answers = {}
            self._task = None

    def close(self) -> None:
        """The core is stopping: end a running update step now (its caller gets a cancellation)."""
        if self._task is not None:
            self._task.cancel()

    def finish(self, deployment_id: str) -> None:
        """Send the post-update event and end the update step of ``deployment_id``."""
        if self._active != deployment_id:
            return
        body = json.dumps({"postUpdateEvent": {"deploymentId": deployment_id}}).encode()
        for name in self.subscribers():
            for stream in list(self._listeners.get(name, ())):
                stream.send_event(EVENT_TYPE, body)
        self._active = None
        self.stats.component_updates += 1
        log.info("deployment %s: components updated; post-update event sent", deployment_id)

    async def _rounds(self, deployment_id: str, timeout_s: float, recheck_min_s: float, max_wait_s: float | None,
                      ggc_restarting: bool) -> UpdateOutcome:
        loop = asyncio.get_running_loop()
        self._started = loop.time()
        deadline = None if max_wait_s is None else self._started + max_wait_s
        body = json.dumps({"preUpdateEvent": {"deploymentId": deployment_id,
                                              "isGgcRestarting": ggc_restarting}}).encode()
        responses: list[UpdateResponse] = []
        notified: set[str] = set()
        unanswered: tuple[str, ...] = ()
        self._round = 0
        while True:
            components = self.subscribers()
            if not components:
                reason: Reason = "no_subscribers"
                break
            self._round += 1
            answers = {name: loop.create_future() for name in components}
            self._answers = dict(answers)
            for name in components:
                for stream in list(self._listeners.get(name, ())):
                    stream.send_event(EVENT_TYPE, body)
            notified.update(components)
            log.info("deployment %s: pre-update event %d sent to %s", deployment_id, self._round,
                     ", ".join(components))
            wait_s = timeout_s if deadline is None else max(0.0, min(timeout_s, deadline - loop.time()))
            await asyncio.wait(answers.values(), timeout=wait_s)
            self._answers = {}
            answered = [future.result() for future in answers.values() if future.done()]
            responses.extend(answered)
            unanswered = tuple(name for name, future in answers.items() if not future.done())
            for future in answers.values():
                future.cancel()
            recheck_ms = max((answer.recheck_after_ms for answer in answered), default=0)
            if recheck_ms <= 0:
                cut_short = unanswered and wait_s < timeout_s
                reason = "max_wait" if cut_short else ("timeout" if unanswered else "not_deferred")
                break
            pause = max(recheck_ms / 1000.0, recheck_min_s)
            if deadline is not None and loop.time() + pause >= deadline:
                await asyncio.sleep(max(0.0, deadline - loop.time()))
                reason = "max_wait"
                break
            await asyncio.sleep(pause)
        waited = round(loop.time() - self._started, 3)
        outcome = UpdateOutcome(deployment_id, reason, waited, self._round, tuple(sorted(notified)), unanswered,
                                tuple(responses))
        log.info("deployment %s: update proceeds (%s) after %.1f s and %d pre-update event(s)%s", deployment_id,
                 reason, waited, self._round, f"; no answer from {', '.join(unanswered)}" if unanswered else "")
        return outcome
