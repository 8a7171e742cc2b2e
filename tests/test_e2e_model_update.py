"""A model rollout end to end: ``vla-edge up``, three published models, ``vla-edge core deploy``.

The suite runs as on a device (separate processes, the real IPC protocol, the synthetic camera,
the emulated arm owned by the test) and starts on model v1. Then, as an operator would:

1. deploy v2 (``vla-edge core deploy --update-config``, ``model: {source: local, path}``) while
   the arm executes v1: the status goes staging -> switching -> active v2, v2 is loaded from the
   run's store, and from the first v2 tick on the arm executes v2's chunks only; how the ticks went
   through the switch (missed slots, ticks without an action, longest gap) is printed, not asserted
   (tests never assert on timing; ``benchmarks/model_update.py`` measures it);
2. deploy v3, whose actions lie far outside the joint limits: staging rejects it
   (``out_of_limits``), the status says failed with that reason, v2 stays active and executing;
3. deploy v4, a good model: it passes staging and drives the arm; during its probation the
   inference process is killed (SIGKILL): the updater rolls back to v2 (``rolled_back``), v2 drives
   the arm again and the store's record says v2, rolled back from v4;
4. deploy with no change (``vla-edge core deploy``, the component-update step alone) while the
   arm executes: the model-updater defers it ("executing"); an e-stop (torque off) lets it go.

Why v2 and v3 go out with ``--skip-notify``: a configuration deployment with the default update
policy runs the component-update step too, so the updater would defer it while the arm executes,
exactly as it defers step 4, and the model would never reach it (the arm executes as long as the
model drives it). A model-only rollout is sent with componentUpdatePolicy SKIP_NOTIFY_COMPONENTS:
the updater itself switches without stopping the arm. Step 4 asserts the deferral.

The arm emulator is the test's own, in a process of its own: in the test process it would wait
for the GIL behind the bus listener and miss the actuator's packet timeout. What fails in other
modules without stopping the flow (the start of the rollout, see :func:`start_on_v1`) is collected
and fails the test at the end, so one run shows everything.

Timing figures (switch time, ticks during the switch) are printed for ``pytest -s``; the
assertions count ticks and never compare a duration. Slow parts: building the three models
(~10 s) and each staging validation (a validator process, ~15-30 s on two busy cores).
"""

from __future__ import annotations

import itertools
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from support import wait_for
from support.ipc import short_run_dir
from support.suite_models import BAD_LIMITS, GOOD_V1, GOOD_V2, published_suite_model
from support.suite_run import BusLog, SuiteRun, executes

from vla_edge import messages
from vla_edge.motors.feetech.emulator.remote import RemoteArmEmulator

pytestmark = pytest.mark.e2e

UPDATER = "com.vlaedge.ModelUpdater"
OPERATOR = "com.vlaedge.Camera"
"""Who publishes the e-stop: the suite has no operator component, so the test grants the camera's identity."""
TICK_S = 1.0 / 30.0
TICK_PHASE_S = 0.004
"""The actuator's defaults (controlHz 30, tickPhaseS), which this test does not change."""
AROUND_S = 0.5
"""The switch window: from this long before the switching status to this long after the first v2 tick."""
BASELINE_S = 3.0
"""Steady running measured just before the deploy, to judge the switch window against."""
SUITE_CONFIG: dict[str, Any] = {
    UPDATER: {"probationS": 2.0, "deferRecheckS": 1.0, "reportPeriodS": 1.0, "stageTimeoutS": 120.0},
    # The emulated servos are a process on the same two shared cores as everything else: while a
    # validator or a model load takes the CPU, an answer can take longer than the default 50 ms,
    # and three such ticks in a row are a fault stop (torque off). Real servos answer in microseconds.
    "com.vlaedge.Actuator": {"packetTimeoutMs": 100.0},
    OPERATOR: {"accessControl": {"aws.greengrass.ipc.pubsub": {"test:operator:estop": {
        "policyDescription": "The test's operator engages the e-stop.",
        "operations": ["aws.greengrass#PublishToTopic"], "resources": [messages.TOPIC_ESTOP]}}}},
}


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """SLOW (~15 s): v1, v2 and v4 (good random ACT policies) and v3 (out of limits), each published."""
    root = tmp_path_factory.mktemp("models")
    return {
        "1": published_suite_model(root / "v1", GOOD_V1, "1", seed=1),
        "2": published_suite_model(root / "v2", GOOD_V2, "2", seed=2),
        "3": published_suite_model(root / "v3", BAD_LIMITS, "3", seed=3),
        "4": published_suite_model(root / "v4", GOOD_V1, "4", seed=4),
    }


def test_vla_edge_model_manifest_is_a_command(tmp_path: Path) -> None:
    """``vla-edge model manifest`` is documented (updater/cli.py, the up --help); it must be reachable."""
    done = subprocess.run([sys.executable, "-m", "vla_edge", "model", "manifest", "--help"], capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, (
        "`vla-edge model manifest` is not reachable from the vla-edge command: src/vla_edge/cli.py dispatches "
        "'model' in _delegate() but _DELEGATED has no 'model' entry, so argparse refuses it: " + done.stderr[-300:]
    )


def wait_executing(log: BusLog) -> None:
    """Until the arm executes steadily (the last ten ticks executed actions, torque on, not holding)."""
    wait_for(lambda: all(s.torque_enabled and not s.holding and s.chunk_id for s in log.states[-10:]),
             timeout=20, interval=0.1)


def deploy_model(suite: SuiteRun, path: Path, figures: dict[str, Any], key: str) -> None:
    """``vla-edge core deploy --update-config`` of ``model: {source: local, path}`` while the arm executes.

    Sent with SKIP_NOTIFY_COMPONENTS (``--skip-notify``, see the module docstring): nobody is asked to
    defer, the updater switches models without stopping the arm.
    """
    wait_executing(suite.log)
    update = {UPDATER: {"MERGE": {"model": {"source": "local", "path": str(path)}}}}
    deployed = suite.deploy(update, "--skip-notify")
    assert deployed["exit"] == 0 and deployed["status"] == "SUCCEEDED", deployed
    assert deployed["update"] is None, deployed  # no component-update step was run
    figures[key] = "applied without a component-update step (skip notify)"


def is_version(ref: messages.ModelRef | None, version: str) -> bool:
    return ref is not None and ref.version == version


def missed_slots(states: list[messages.JointState], origin: float = 0.0) -> tuple[int, int, list[str]]:
    """Control-grid slots without a tick, over consecutive JointStates: (missed, longest step, where).

    The actuator ticks on the wall-clock grid ``k * period + tickPhaseS`` and stamps each JointState
    when the tick's write and read are done, so a state's slot is ``floor((t - phase) / period)``.
    Consecutive slots one apart: nothing missed (whatever the jitter inside the slot); two apart:
    one slot passed without a tick. ``where`` lists each step above one as "+seconds:slots" from ``origin``.
    """
    slots = [math.floor((s.t - TICK_PHASE_S) / TICK_S) for s in states]
    missed, longest, where = 0, 1, []
    for before, (a, b) in zip(states, itertools.pairwise(slots)):
        missed += max(0, b - a - 1)
        longest = max(longest, b - a)
        if b - a > 1:
            where.append(f"{before.t - origin:+.2f}s:{b - a}")
    return missed, longest, where


def deferred_by_updater(outcome: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for r in outcome["responses"] if r["component"] == UPDATER and r["recheck_after_ms"] > 0]


@pytest.mark.timeout(900)  # four rollouts, each validated in a separate process on two shared cores
def test_rollout_switch_under_motion_rejection_and_deferral(
    models: dict[str, Path], demo_cache: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    work = tmp_path_factory.mktemp("rollout")
    (work / "suite.yaml").write_text(yaml.safe_dump(SUITE_CONFIG))
    figures: dict[str, Any] = {}
    problems: list[str] = []
    """Failures of other modules that the rest of the flow can go on without: reported at the end."""
    emulator = RemoteArmEmulator()  # the test's own arm, in a process of its own (see RemoteArmEmulator)
    try:
        with short_run_dir() as run_dir, SuiteRun(
            run_dir, emulator.device_path, work / "up.stderr",
            ["--policy", str(models["1"]), "--cache-dir", str(demo_cache), "--config", str(work / "suite.yaml")],
        ) as suite:
            try:
                start_on_v1(suite, problems)
                switch_to_v2(suite, models, figures)
                reject_v3(suite, models, figures)
                roll_back_v4(suite, models, figures)
                defer_until_estop(suite, figures)
            except AssertionError as exc:
                raise AssertionError(f"{exc}\n{suite.diagnosis()}") from exc
            code = suite.stop()
            summary = suite.summary
    finally:
        emulator.stop()
        print_figures(figures)
    assert code == 0 and summary is not None and summary["ok"], summary
    restarts = {name: c["restarts"] for name, c in summary["components"].items()}
    assert restarts == {**dict.fromkeys(restarts, 0), "inference": 1}, restarts  # the crash roll_back_v4 caused
    assert not problems, "\n".join(problems)


def start_on_v1(suite: SuiteRun, problems: list[str]) -> None:
    """The updater verified v1 into the store and reports it active; the arm executes its chunks."""
    log = suite.log
    active = log.wait_status(lambda s: s.state == "active" and is_version(s.model, "1"), timeout=180)
    wait_for(executes(log, "1", 60), timeout=60, interval=0.2)
    if active.path is None or not active.path.startswith(str(suite.run_dir / "store")):
        failed = [s.detail for s in log.status_list() if s.state == "failed"]
        problem = (f"start-up: v1 (`vla-edge up --policy v1`, its manifest present) is active but not from the "
                   f"run's store: {active.detail!r}; the updater's first rollout failed: {failed}.")
        if any("inference_restarted" in detail for detail in failed):
            problem += (" Its stage command went out while the inference component was still loading its model "
                        "(not yet subscribed to model commands); the component's start announcement then ended the "
                        "wait as inference_restarted, and the rollout of the desired model counts as settled, so it "
                        "is not tried again (model_updater/orchestrator.py _rollout sets _settled before the run; "
                        "channel.py _fail_all_waiting).")
        problems.append(problem)


def switch_to_v2(suite: SuiteRun, models: dict[str, Path], figures: dict[str, Any]) -> None:
    log = suite.log
    before = len(log.statuses)
    starved = log.counter("actuator", "starved_ticks")
    baseline = missed_slots(log.states_since(time.time() - BASELINE_S))[0]
    figures[f"missed_slots_in_{BASELINE_S:.0f}s_before_deploy"] = baseline
    deploy_model(suite, models["2"], figures, "v2_deployment")
    applied_at = time.monotonic()

    # staging -> switching (v1 serving, v2 next, no hold) -> active v2
    active = log.wait_status(lambda s: s.state == "active" and is_version(s.model, "2"), after=before, timeout=120)
    figures["deploy_to_active_s"] = round(time.monotonic() - applied_at, 2)
    sequence = [s for s in log.status_list()[before:] if s.state != "active" or is_version(s.model, "2")]
    states = [s.state for s in sequence]
    assert "staging" in states and "switching" in states, states
    assert states.index("staging") < states.index("switching") < states.index("active"), states
    switching = next(s for s in sequence if s.state == "switching")
    assert is_version(switching.model, "1") and is_version(switching.next_model, "2") and not switching.hold, switching

    # v2 came from the run's store, its first tick executed its first chunk, and from then on nothing of v1
    serving = next(h.message for h in list(log.reports) if h.message.state == "serving"
                   and is_version(h.message.model, "2") and h.message.request_id is not None)
    assert serving.path is not None and serving.path.startswith(str(suite.run_dir / "store")), serving
    wait_for(executes(log, "2", 60, since=active.t), timeout=30, interval=0.2)
    executed = [(s, log.model_of(s)) for s in log.states_since(switching.t - AROUND_S) if s.chunk_id]
    first_v2 = next(s for s, model in executed if is_version(model, "2"))
    others = [m for s, m in executed if s.t >= first_v2.t and not is_version(m, "2")]
    assert not others, f"{len(others)} ticks after the first v2 tick executed another model's chunks: {others[:3]}"
    figures.update(switch_s=round(active.t - switching.t, 3), inference_says=serving.detail,
                   switching_to_first_v2_tick_s=round(first_v2.t - switching.t, 3),
                   ticks_switching_to_first_v2=sum(1 for s in executed if switching.t <= s[0].t < first_v2.t),
                   first_v2_tick_from_first_chunk=first_v2.chunk_id == serving.first_chunk_id)
    ticks_through_switch(log, switching.t, max(active.t, first_v2.t), baseline, figures)
    figures["starved_during_rollout"] = log.counter("actuator", "starved_ticks") - starved


def ticks_through_switch(log: BusLog, began: float, ended: float, baseline: int, figures: dict[str, Any]) -> None:
    """The actuator kept ticking from ``AROUND_S`` before ``began`` to ``AROUND_S`` after ``ended`` (wall times)."""
    start, end = began - AROUND_S, ended + AROUND_S
    wait_for(lambda: log.health_after("actuator", end + 1.0), timeout=10, interval=0.1)
    window = [s for s in log.states_since(start) if s.t <= end]
    missed, longest, where = missed_slots(window, began)

    def grew(counter: str) -> int | None:
        """How much an actuator counter grew across the window (the health reports bracketing it)."""
        first, last = log.counter_at("actuator", counter, start), log.counter_at("actuator", counter, end, later=True)
        return None if first is None or last is None else last - first

    starved, bus_errors = grew("starved_ticks"), grew("bus_errors")
    figures.update(window_s=round(end - start, 2), ticks_in_window=len(window), missed_slots_in_window=missed,
                   longest_step_slots=longest, missed_at=where, tick_overruns_in_window=grew("tick_overruns"),
                   starved_in_window=starved, bus_errors_in_window=bus_errors,
                   load_average=[round(x, 1) for x in os.getloadavg()])
    # Real-time figures, not assertions: on a shared two-core machine a servo bus error (the emulated
    # arm answering late), CPU load or loading v2 beside v1 can delay a tick or a chunk whatever the
    # switch does, and tests never assert on timing. benchmarks/model_update.py measures missed ticks
    # during a switch beside a baseline window; here they are printed for the record.
    after_switch = [s for s in window if s.t >= began]
    figures.update(
        ticks_without_action_after_switching=sum(
            1 for s in after_switch if not (s.torque_enabled and not s.holding and s.chunk_id)),
        missed_slots_before_deploy=baseline,
    )


def reject_v3(suite: SuiteRun, models: dict[str, Path], figures: dict[str, Any]) -> None:
    log = suite.log
    before = len(log.statuses)
    wait_for(lambda: any(s.state == "active" and is_version(s.model, "2") and "probation" in s.detail
                         and "passed" in s.detail for s in log.status_list()), timeout=30, interval=0.1)
    starved = log.counter("actuator", "starved_ticks")
    deploy_model(suite, models["3"], figures, "v3_deployment")
    failed = log.wait_status(lambda s: s.state == "failed", after=before, timeout=120)
    assert is_version(failed.next_model, "3") and "out_of_limits" in failed.detail, failed
    assert is_version(failed.model, "2"), failed
    after_failure = log.status_list().index(failed) + 1
    active = log.wait_status(lambda s: s.state == "active", after=after_failure, timeout=10)
    assert is_version(active.model, "2"), active
    wait_for(executes(log, "2", 60, since=failed.t), timeout=30, interval=0.2)
    after = [log.model_of(s) for s in log.states_since(failed.t) if s.chunk_id]
    assert all(is_version(m, "2") for m in after)
    wait_for(lambda: log.health_after("actuator", failed.t + 1.0), timeout=10, interval=0.1)
    figures["starved_during_v3_staging"] = log.counter("actuator", "starved_ticks") - starved
    figures["v3_failure"] = failed.detail[:160]


def roll_back_v4(suite: SuiteRun, models: dict[str, Path], figures: dict[str, Any]) -> None:
    """v4 passes staging and drives the arm; during its probation the inference process is killed
    (SIGKILL, as the OOM killer would): the updater rolls back to v2, which drives the arm again."""
    log = suite.log
    before = len(log.statuses)
    wait_executing(log)
    update = {UPDATER: {"MERGE": {"model": {"source": "local", "path": str(models["4"])}, "probationS": 120.0}}}
    deployed = suite.deploy(update, "--skip-notify")
    assert deployed["exit"] == 0 and deployed["status"] == "SUCCEEDED", deployed
    on_probation = log.wait_status(lambda s: s.state == "active" and is_version(s.model, "4")
                                   and "on probation" in s.detail, after=before, timeout=120)
    wait_for(executes(log, "4", 30, since=on_probation.t), timeout=30, interval=0.2)
    killed = time.time()
    suite.kill_component("vla_edge.components.inference")

    rolled = log.wait_status(lambda s: s.state == "rolled_back", after=before, timeout=120)
    assert is_version(rolled.model, "2"), rolled
    assert "rolled back from" in rolled.detail and ("inference_restarted" in rolled.detail
                                                    or "inference_silent" in rolled.detail), rolled.detail
    after_rollback = log.status_list().index(rolled) + 1
    active = log.wait_status(lambda s: s.state == "active", after=after_rollback, timeout=10)
    assert is_version(active.model, "2"), active
    wait_for(executes(log, "2", 30, since=rolled.t), timeout=120, interval=0.2)
    executed = [log.model_of(s) for s in log.states_since(killed) if s.chunk_id]
    assert not any(is_version(m, "1") for m in executed), "chunks of the model the restarted inference loaded first"
    first_v2 = next(i for i, m in enumerate(executed) if is_version(m, "2"))
    assert all(is_version(m, "2") for m in executed[first_v2:]), "v4 chunks executed after the rollback"
    # What decides the model after a restart of the device: v2 active, v4 remembered as rolled back from
    record = json.loads((suite.run_dir / "store" / "active.json").read_text())
    assert record["active"]["version"] == "2" and record["event"] == "rollback", record
    assert [m["version"] for m in record["rolled_back"]][:1] == ["4"], record
    figures.update(v4_rollback=rolled.detail[:200], kill_to_rolled_back_s=round(rolled.t - killed, 2))


def defer_until_estop(suite: SuiteRun, figures: dict[str, Any]) -> None:
    log = suite.log
    for attempt in range(3):
        # The updater defers only while the arm executes; a servo hiccup on a busy machine can make the
        # arm hold at the very moment it is asked, and then the update rightly goes ahead: ask again.
        wait_executing(log)
        deferred = log.counter("model_updater", "updates.deferred")
        deploy = subprocess.Popen(suite.deploy_command(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_for(lambda before=deferred, child=deploy: log.counter("model_updater", "updates.deferred") > before
                 or child.poll() is not None, timeout=30, interval=0.1)
        if log.counter("model_updater", "updates.deferred") > deferred:
            break
        deploy.communicate(timeout=30)
        figures[f"deploy_not_deferred_attempt_{attempt + 1}"] = "the arm was holding when asked"
    try:
        assert log.counter("model_updater", "updates.deferred") > deferred, "never deferred while executing"
        assert deploy.poll() is None, "the update went ahead while the arm executed"
        engaged = time.monotonic()
        suite.publish_as(OPERATOR, messages.EStop(t=time.time(), engaged=True, source="test", reason="let it update"))
        stdout, stderr = deploy.communicate(timeout=60)
    finally:
        if deploy.poll() is None:
            deploy.kill()
    assert deploy.returncode == 0, stderr
    outcome = json.loads(stdout)
    figures["update_after_estop_s"] = round(time.monotonic() - engaged, 2)
    assert outcome["reason"] == "not_deferred", outcome
    deferrals = deferred_by_updater(outcome)
    assert deferrals and "executing" in deferrals[0]["message"], outcome
    last = outcome["responses"][-1]
    assert last["component"] == UPDATER and last["recheck_after_ms"] == 0, outcome
    figures["deferral"] = deferrals[0]["message"]
    figures["deferred_rounds"] = len(deferrals)
    assert not log.states[-1].torque_enabled


def print_figures(figures: dict[str, Any]) -> None:
    print("\nmodel rollout figures:")
    for key, value in figures.items():
        print(f"  {key}: {value}")

