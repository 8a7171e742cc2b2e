"""Commands to the inference component, and the reports that answer them.

Each :class:`~vla_edge.messages.ModelCommand` carries a request id; the inference component
answers with :class:`~vla_edge.messages.ModelReport` messages carrying it back (intermediate
ones such as ``validating``, then a final one). The waiter is registered *before* the command
is published: on the in-memory bus, and with a fast inference component, the answer can arrive
before ``publish`` returns.

A ``serving`` report without a request id is the inference component's announcement on start.
Arriving while commands wait, it means the component restarted and lost them: those waits end
at once with a ``failed``/``inference_restarted`` answer instead of running into their timeouts
(the orchestrator retries such a rollout: nothing was wrong with the model).

:attr:`InferenceChannel.heard` tells whether any report came at all: an inference component that
has not announced itself (still loading, not subscribed yet) does not receive commands.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from vla_edge import messages
from vla_edge.errors import BusError, ModelUpdateError

TERMINAL: dict[str, frozenset[str]] = {
    "stage": frozenset({"staged", "serving", "failed"}),
    "activate": frozenset({"serving", "failed"}),
    "discard": frozenset({"unloaded", "failed"}),
}
"""The states that end each command (an ``activate`` of a model not loaded stages it first)."""

ProgressHandler = Callable[[messages.ModelReport], None]


class InferenceChannel:
    """Sends model commands and waits for their answers; thread-safe."""

    def __init__(self, publish: Callable[[messages.Message], None], log: logging.Logger) -> None:
        self._publish = publish
        self.log = log
        self._changed = threading.Condition()
        self._waiting: dict[str, list[messages.ModelReport]] = {}
        self._progress: dict[str, ProgressHandler] = {}
        self._closed = False
        self._heard = False

    @property
    def heard(self) -> bool:
        """Whether the inference component reported anything yet (its start announcement or an answer)."""
        return self._heard

    def wait_heard(self, timeout_s: float) -> bool:
        """Wait until the inference component reported anything (True), the timeout, or close (False)."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while not self._heard:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._closed:
                    return False
                self._changed.wait(remaining)
            return True

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """End every wait now (with no answer), and every later one at once: the component is stopping."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()

    def send(self, action: messages.ModelAction, model: messages.ModelRef, path: str = "",
             progress: ProgressHandler | None = None, **fields: Any) -> str:
        """Publish one command and start collecting its answers; returns its request id."""
        command = messages.ModelCommand(t=time.time(), action=action, model=model, path=path, **fields)
        with self._changed:
            self._waiting[command.request_id] = []
            if progress is not None:
                self._progress[command.request_id] = progress
        try:
            self._publish(command)
        except BusError as exc:
            self.forget(command.request_id)
            raise ModelUpdateError(f"cannot send {action} of {model.name} {model.version} to the inference "
                                   f"component: {exc}") from exc
        return command.request_id

    def wait(self, request_id: str, final: Iterable[str], timeout_s: float) -> messages.ModelReport | None:
        """The first answer to ``request_id`` in one of the ``final`` states; None after ``timeout_s``."""
        final = frozenset(final)
        deadline = time.monotonic() + timeout_s
        try:
            with self._changed:
                while True:
                    for report in self._waiting.get(request_id, []):
                        if report.state in final:
                            return report
                    remaining = deadline - time.monotonic()
                    if remaining <= 0 or self._closed:
                        return None
                    self._changed.wait(remaining)
        finally:
            self.forget(request_id)

    def request(self, action: messages.ModelAction, model: messages.ModelRef, timeout_s: float, path: str = "",
                progress: ProgressHandler | None = None, **fields: Any) -> messages.ModelReport | None:
        """Send and wait for the command's final answer (see :data:`TERMINAL`); None when none came in time."""
        request_id = self.send(action, model, path, progress, **fields)
        return self.wait(request_id, TERMINAL[action], timeout_s)

    def forget(self, request_id: str) -> None:
        with self._changed:
            self._waiting.pop(request_id, None)
            self._progress.pop(request_id, None)

    def on_report(self, report: messages.ModelReport) -> bool:
        """Hand a report to whoever waits for it; False when nobody does (unsolicited or late)."""
        with self._changed:
            first = not self._heard
            self._heard = True
            self._changed.notify_all()
            if report.request_id is None:
                if report.state == "serving" and self._waiting:
                    self._fail_all_waiting(report, first)
                return False
            if report.request_id not in self._waiting:
                return False
            self._waiting[report.request_id].append(report)
            progress = self._progress.get(report.request_id)
            self._changed.notify_all()
        if progress is not None and report.state not in ("failed",):
            progress(report)
        return True

    def _fail_all_waiting(self, announcement: messages.ModelReport, first: bool) -> None:
        served = f"{announcement.model.name} {announcement.model.version}"
        detail = (f"the inference component started after this command was sent (it now serves {served}) and did "
                  "not receive it" if first else
                  f"the inference component restarted (it now serves {served}) and dropped this command")
        for request_id, reports in self._waiting.items():
            reports.append(messages.ModelReport(t=time.time(), request_id=request_id, model=announcement.model,
                                                state="failed", reason="inference_restarted", detail=detail))
        self.log.warning("%s; %d command(s) ended", detail, len(self._waiting))
        self._changed.notify_all()
