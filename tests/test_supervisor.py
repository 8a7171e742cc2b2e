"""Real child processes under the supervisor: restart on error, BROKEN after three, clean stop."""

from __future__ import annotations

import sys
from pathlib import Path

from support import wait_for

from vla_edge.supervisor import ProcessSpec, Supervisor


def test_crashing_process_is_restarted_then_marked_broken(tmp_path: Path) -> None:
    marker = tmp_path / "starts"
    crash = f"open({str(marker)!r}, 'a').write('x'); raise SystemExit(3)"
    healthy = "import time; time.sleep(60)"
    supervisor = Supervisor(
        [
            ProcessSpec("crasher", [sys.executable, "-c", crash], log_path=tmp_path / "crasher.log"),
            ProcessSpec("healthy", [sys.executable, "-c", healthy]),
        ],
        restart_delay_s=0.05,
    )
    supervisor.start()
    try:
        wait_for(lambda: supervisor.statuses()["crasher"].state == "BROKEN", timeout=30)
        crasher = supervisor.statuses()["crasher"]
        assert crasher.starts == 3 and crasher.restarts == 2
        assert crasher.exit_codes == [3, 3, 3]
        assert marker.read_text() == "xxx"
        assert supervisor.statuses()["healthy"].state == "RUNNING"
    finally:
        final = supervisor.stop(timeout_s=10)
    assert final["healthy"].state == "STOPPED"
    assert final["crasher"].state == "BROKEN"


def test_process_that_errors_once_recovers(tmp_path: Path) -> None:
    flag = tmp_path / "failed-once"
    script = (
        "import pathlib, time, sys\n"
        f"flag = pathlib.Path({str(flag)!r})\n"
        "if not flag.exists():\n"
        "    flag.write_text('1'); sys.exit(1)\n"
        "time.sleep(60)\n"
    )
    supervisor = Supervisor([ProcessSpec("flaky", [sys.executable, "-c", script])], restart_delay_s=0.05)
    supervisor.start()
    try:
        wait_for(lambda: supervisor.statuses()["flaky"].starts == 2, timeout=30)
        status = supervisor.statuses()["flaky"]
        assert status.state == "RUNNING" and status.errors == 1
    finally:
        supervisor.stop(timeout_s=10)


def test_clean_exit_is_finished_not_restarted(tmp_path: Path) -> None:
    supervisor = Supervisor([ProcessSpec("once", [sys.executable, "-c", "pass"])], restart_delay_s=0.05)
    supervisor.start()
    try:
        wait_for(lambda: supervisor.statuses()["once"].state == "FINISHED", timeout=30)
        assert supervisor.statuses()["once"].starts == 1
    finally:
        supervisor.stop()


def test_process_ignoring_sigterm_is_killed(tmp_path: Path) -> None:
    stubborn = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(60)"
    log = tmp_path / "stubborn.log"
    supervisor = Supervisor([ProcessSpec("stubborn", [sys.executable, "-c", stubborn], log_path=log)])
    supervisor.start()
    wait_for(lambda: log.exists() and "ready" in log.read_text(), timeout=30)
    final = supervisor.stop(timeout_s=0.5)
    assert final["stubborn"].state == "STOPPED"
