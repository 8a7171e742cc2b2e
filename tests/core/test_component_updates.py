"""Component updates: SubscribeToComponentUpdates, DeferComponentUpdate and the deployment's update step.

The real awsiotsdk client against the local core. Stream callbacks run on the SDK's
network thread (``executor=None``), so they answer with the ``_async`` calls: a
blocking call there would wait for a reply that thread itself has to read.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from awsiot.greengrasscoreipc import model
from support import wait_for
from support.ipc import ALPHA, BETA, GAMMA, Inbox

import vla_edge
from vla_edge.core.cli import main
from vla_edge.core.control import CONTROL_SOCKET_NAME
from vla_edge.core.server import LocalCore
from vla_edge.core.updates import UpdateOutcome
from vla_edge.errors import CoreError

Decision = Callable[[str, int], "tuple[int, str | None] | None"]
"""(deployment id, how many pre-update events so far) -> (recheckAfterMs, message), or None to stay silent."""


class Updater:
    """A component subscribed to component updates that answers pre-update events with ``decide``."""

    def __init__(self, client: Any, decide: Decision) -> None:
        self.client = client
        self.decide = decide
        self.events = Inbox()
        self.asked = 0
        self.answers: list[Any] = []  # futures of the DeferComponentUpdate calls
        _response, self.operation = client.subscribe_to_component_updates(on_stream_event=self._on_event)

    def _on_event(self, event: model.ComponentUpdatePolicyEvents) -> None:
        self.events(event)  # first: the core may act on the answer before this callback returns
        if event.pre_update_event is not None:
            self.asked += 1
            answer = self.decide(event.pre_update_event.deployment_id, self.asked)
            if answer is not None:
                recheck, message = answer
                self.answers.append(self.client.defer_component_update_async(
                    deployment_id=event.pre_update_event.deployment_id, message=message, recheck_after_ms=recheck))

    def kinds(self) -> list[str]:
        return ["pre" if e.pre_update_event is not None else "post" for e in self.events.items]


def ready(_deployment: str, _asked: int) -> tuple[int, str | None]:
    return 0, None


def silent(_deployment: str, _asked: int) -> None:
    return None


def test_subscribers_get_pre_update_then_post_update(core: LocalCore, ipc: Callable[..., Any]) -> None:
    alpha, beta = Updater(ipc(ALPHA), ready), Updater(ipc(BETA), lambda _d, _n: (0, "idle, go ahead"))
    outcome = core.update_components("deployment-1", timeout_s=30, recheck_min_s=0)
    assert (outcome.deployment_id, outcome.reason, outcome.rounds) == ("deployment-1", "not_deferred", 1)
    assert outcome.notified == (ALPHA, BETA) and outcome.unanswered == () and not outcome.deferred
    assert {(r.component, r.recheck_after_ms, r.message) for r in outcome.responses} == {
        (ALPHA, 0, None), (BETA, 0, "idle, go ahead")}
    for updater in (alpha, beta):
        pre, post = updater.events.wait_for_count(2)
        assert pre.pre_update_event == model.PreComponentUpdateEvent(deployment_id="deployment-1",
                                                                     is_ggc_restarting=False)
        assert post.post_update_event == model.PostComponentUpdateEvent(deployment_id="deployment-1")
    assert core.stats()["component_updates"] == 1


def test_deferring_component_is_asked_again_until_it_stops(core: LocalCore, ipc: Callable[..., Any]) -> None:
    def busy_twice(_deployment: str, asked: int) -> tuple[int, str | None]:
        return (50, f"arm executing (ask {asked})") if asked <= 2 else (0, "arm holding")

    alpha, beta = Updater(ipc(ALPHA), busy_twice), Updater(ipc(BETA), ready)
    outcome = core.update_components(timeout_s=30, recheck_min_s=0)
    assert outcome.reason == "not_deferred" and outcome.rounds == 3
    assert [(r.component, r.recheck_after_ms, r.message, r.round) for r in outcome.deferrals] == [
        (ALPHA, 50, "arm executing (ask 1)", 1), (ALPHA, 50, "arm executing (ask 2)", 2)]
    assert alpha.asked == beta.asked == 3  # every subscriber is asked again, as the nucleus does
    alpha.events.wait_for_count(4)  # the post-update event travels after update_components returns
    assert alpha.kinds() == ["pre", "pre", "pre", "post"]
    assert all(future.result(5) is not None for future in alpha.answers)
    assert core.stats()["update_deferrals"] == 2


def test_silent_subscriber_is_waited_for_until_the_timeout(core: LocalCore, ipc: Callable[..., Any]) -> None:
    quiet, prompt = Updater(ipc(ALPHA), silent), Updater(ipc(BETA), ready)
    outcome = core.update_components(timeout_s=0.3, recheck_min_s=0)
    assert (outcome.reason, outcome.rounds, outcome.unanswered) == ("timeout", 1, (ALPHA,))
    assert quiet.events.wait_for_count(2) and quiet.kinds() == ["pre", "post"]  # the update went ahead anyway
    assert prompt.events.wait_for_count(2) and prompt.kinds() == ["pre", "post"]


def test_late_answer_is_the_nucleus_time_limit_error(core: LocalCore, ipc: Callable[..., Any]) -> None:
    quiet = Updater(ipc(ALPHA), silent)
    outcome = core.update_components("late", timeout_s=0.2, recheck_min_s=0)
    assert outcome.reason == "timeout"
    with pytest.raises(model.ServiceError) as raised:
        quiet.client.defer_component_update(deployment_id="late", recheck_after_ms=1000)
    assert raised.value.message == "Time limit to respond to PreComponentUpdateEvent exceeded"


def test_max_wait_ends_endless_deferral(core: LocalCore, ipc: Callable[..., Any]) -> None:
    stubborn = Updater(ipc(ALPHA), lambda _d, _n: (20, "never ready"))
    outcome = core.update_components(timeout_s=30, recheck_min_s=0, max_wait_s=0.3)
    assert outcome.reason == "max_wait" and outcome.deferred
    assert {r.message for r in outcome.deferrals} == {"never ready"}
    wait_for(lambda: stubborn.kinds()[-1:] == ["post"])


def test_no_subscribers_means_no_waiting(core: LocalCore) -> None:
    outcome = core.update_components(ggc_restarting=True)
    assert (outcome.reason, outcome.rounds, outcome.notified) == ("no_subscribers", 0, ())
    assert len(outcome.deployment_id) > 8  # a generated id


def test_ggc_restarting_is_passed_on(core: LocalCore, ipc: Callable[..., Any]) -> None:
    alpha = Updater(ipc(ALPHA), ready)
    core.update_components("restart", ggc_restarting=True, recheck_min_s=0)
    assert alpha.events.wait_for_count(1)[0].pre_update_event.is_ggc_restarting is True


def test_update_runs_between_pre_and_post_even_when_it_fails(core: LocalCore, ipc: Callable[..., Any]) -> None:
    alpha = Updater(ipc(ALPHA), ready)
    seen: list[list[str]] = []
    core.update_components("one", recheck_min_s=0, update=lambda: seen.append(alpha.kinds()))
    assert seen == [["pre"]]

    def broken() -> None:
        raise RuntimeError("artifact download failed")

    with pytest.raises(RuntimeError, match="artifact download failed"):
        core.update_components("two", recheck_min_s=0, update=broken)
    wait_for(lambda: alpha.kinds() == ["pre", "post", "pre", "post"])  # components resume either way


def test_one_update_step_at_a_time(core: LocalCore, ipc: Callable[..., Any]) -> None:
    release = threading.Event()
    Updater(ipc(ALPHA), lambda _d, _n: (0, "done") if release.is_set() else (20, "busy"))
    result: dict[str, Any] = {}
    first = threading.Thread(target=lambda: result.update(outcome=core.update_components(
        "first", timeout_s=30, recheck_min_s=0)))
    first.start()
    wait_for(lambda: core.stats()["update_deferrals"] > 0)
    with pytest.raises(CoreError, match="deployment first is still running"):
        core.update_components("second", recheck_min_s=0)
    release.set()
    first.join(30)
    assert result["outcome"].reason == "not_deferred"
    assert core.update_components("third", recheck_min_s=0).reason == "not_deferred"  # free again


def test_stopping_the_core_ends_a_running_update_step(core_factory: Callable[..., LocalCore],
                                                       ipc: Callable[..., Any]) -> None:
    core = core_factory()
    Updater(ipc(ALPHA, core), lambda _d, _n: (20, "busy"))
    errors: list[BaseException] = []

    def run() -> None:
        try:
            core.update_components("interrupted", timeout_s=30, recheck_min_s=0)
        except CoreError as exc:
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    wait_for(lambda: core.stats()["update_deferrals"] > 0)
    core.stop()
    thread.join(30)
    assert not thread.is_alive() and len(errors) == 1 and "stopped" in str(errors[0])


def test_defer_errors_use_the_nucleus_answers(core: LocalCore, ipc: Callable[..., Any]) -> None:
    with pytest.raises(model.InvalidArgumentsError) as raised:
        ipc(GAMMA).defer_component_update(deployment_id="x", recheck_after_ms=0)
    assert raised.value.message == "Component is not subscribed to component update events"
    calls: dict[str, Any] = {}

    def answer_badly_then_well(deployment: str, asked: int) -> tuple[int, str | None]:
        calls["wrong id"] = alpha.client.defer_component_update_async(deployment_id="other", recheck_after_ms=0)
        calls["no recheck"] = alpha.client.defer_component_update_async(deployment_id=deployment)
        return 0, "ready"

    alpha = Updater(ipc(ALPHA), answer_badly_then_well)
    outcome = core.update_components("real", timeout_s=30, recheck_min_s=0)
    assert outcome.reason == "not_deferred"
    with pytest.raises(model.InvalidArgumentsError) as raised:
        calls["wrong id"].result(5)
    assert "deployment other is not the update waiting for an answer" in raised.value.message
    with pytest.raises(model.InvalidArgumentsError) as raised:
        calls["no recheck"].result(5)
    assert "recheckAfterMs is required" in raised.value.message
    with pytest.raises(model.ServiceError):  # subscribed, but nobody is waiting for an answer now
        alpha.client.defer_component_update(deployment_id="real", recheck_after_ms=0)


def test_closed_subscription_is_not_asked(core: LocalCore, ipc: Callable[..., Any]) -> None:
    gone, kept = Updater(ipc(ALPHA), silent), Updater(ipc(BETA), ready)
    gone.operation.close().result(5)
    wait_for(lambda: core.update_subscribers() == [BETA])
    outcome = core.update_components(timeout_s=30, recheck_min_s=0)
    assert outcome.notified == (BETA,) and outcome.reason == "not_deferred"
    kept.events.wait_for_count(2)
    assert gone.events.items == [] and kept.kinds() == ["pre", "post"]


def test_outcome_round_trips_through_json() -> None:
    document = {"deployment_id": "d", "reason": "timeout", "waited_s": 1.5, "rounds": 2, "notified": ["a"],
                "unanswered": ["a"], "responses": [{"component": "a", "recheck_after_ms": 5, "message": "m",
                                                    "round": 1, "at_s": 0.1}]}
    outcome = UpdateOutcome.from_dict(json.loads(json.dumps(document)))
    assert outcome.to_dict() == document and outcome.deferred


# -- triggering an update from another process: `vla-edge core deploy` over the control socket --------


def _child_env() -> dict[str, str]:
    source = str(Path(vla_edge.__file__).resolve().parents[1])
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [source, os.environ.get("PYTHONPATH")]))}


def test_deploy_command_end_to_end(core: LocalCore, ipc: Callable[..., Any]) -> None:
    alpha = Updater(ipc(ALPHA), lambda _d, asked: (30, "arm executing a chunk") if asked == 1 else (0, "holding"))
    result = subprocess.run(
        [sys.executable, "-m", "vla_edge.core", "deploy", "--run-dir", str(core.run_dir), "--deployment-id",
         "cli-1", "--timeout", "30", "--recheck-min", "0"], env=_child_env(), capture_output=True, text=True,
        timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert "deployment cli-1: update went ahead" in result.stdout and "(not deferred; 2 pre-update" in result.stdout
    assert f"deferred by {ALPHA} for 30 ms" in result.stdout and "arm executing a chunk" in result.stdout
    alpha.events.wait_for_count(3)
    assert alpha.kinds() == ["pre", "pre", "post"]
    assert alpha.events.items[0].pre_update_event.deployment_id == "cli-1"


def test_deploy_command_json_and_errors(core: LocalCore, ipc: Callable[..., Any], tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    Updater(ipc(ALPHA), silent)
    assert main(["deploy", "--run-dir", str(core.run_dir), "--timeout", "0.2", "--json"]) == 0
    outcome = UpdateOutcome.from_dict(json.loads(capsys.readouterr().out))
    assert (outcome.reason, outcome.unanswered) == ("timeout", (ALPHA,))
    assert main(["deploy", "--run-dir", str(tmp_path)]) == 1
    assert "no local core is running" in capsys.readouterr().err
    assert main(["deploy", "--run-dir", str(core.run_dir), "--timeout", "0"]) == 1
    assert "timeout_s must be positive" in capsys.readouterr().err


def test_control_client_hanging_up_cancels_the_update(core: LocalCore, ipc: Callable[..., Any]) -> None:
    alpha = Updater(ipc(ALPHA), lambda _d, _n: (20, "busy"))
    control = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    control.connect(str(core.run_dir / CONTROL_SOCKET_NAME))
    control.sendall(json.dumps({"op": "update-components", "deploymentId": "abandoned", "recheckMinS": 0}).encode()
                    + b"\n")
    wait_for(lambda: alpha.asked >= 2)
    control.close()
    wait_for(lambda: alpha.kinds()[-1:] == ["post"])  # told at once that the update will not happen
    assert core.update_components("next", timeout_s=0.2, recheck_min_s=0, max_wait_s=0.2).reason == "max_wait"


def test_control_socket_refuses_unknown_requests(core: LocalCore) -> None:
    for line in (b"not json\n", b'{"op": "reboot"}\n'):
        control = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        control.connect(str(core.run_dir / CONTROL_SOCKET_NAME))
        control.sendall(line)
        answer = json.loads(control.makefile("rb").readline())
        control.close()
        assert answer["ok"] is False and answer["error"]
    assert (core.run_dir / CONTROL_SOCKET_NAME).stat().st_mode & 0o777 == 0o600
