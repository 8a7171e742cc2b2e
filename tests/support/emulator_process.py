"""The STS3215 arm emulator in a child process, driven from the test over a JSON-lines pipe.

Why a process: in the test's own process the emulator's serving thread competes for the GIL
with the component under test, the in-memory broker and logging, so on two busy cores a
status packet can miss the actuator's packet timeout for reasons no real servo has. In a
process of its own it answers like a servo on its own microcontroller.

:class:`EmulatorProcess` offers the test hooks of
:class:`~vla_edge.motors.feetech.emulator.ArmEmulator` (every public method, called by name)
plus :attr:`device_path`. Values cross the pipe as JSON: dicts keyed by servo id come back
keyed by ``int`` again, snapshots as :class:`~vla_edge.motors.feetech.emulator.arm.ServoSnapshot`,
goal writes as tuples. Run ``python -m support.emulator_process`` to serve one by hand.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Self

from vla_edge.motors.feetech.emulator.arm import ArmEmulator, ServoSnapshot

_TESTS_DIR = Path(__file__).resolve().parent.parent


def _encode(value: Any) -> Any:
    if isinstance(value, ServoSnapshot):
        return {"snapshot": dataclasses.asdict(value)}
    if isinstance(value, dict):
        return {"by_id": [[key, _encode(item)] for key, item in value.items()]}
    if isinstance(value, tuple):
        return {"tuple": [_encode(item) for item in value]}
    if isinstance(value, list):
        return [_encode(item) for item in value]
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict) and "snapshot" in value:
        return ServoSnapshot(**value["snapshot"])
    if isinstance(value, dict) and "by_id" in value:
        return {int(key): _decode(item) for key, item in value["by_id"]}
    if isinstance(value, dict) and "tuple" in value:
        return tuple(_decode(item) for item in value["tuple"])
    if isinstance(value, list):
        return [_decode(item) for item in value]
    return value


class EmulatorProcess:
    """An :class:`ArmEmulator` serving a pseudo-terminal from a child process."""

    def __init__(self, n: int = 6, **options: Any) -> None:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(_TESTS_DIR), os.environ.get("PYTHONPATH")])))
        self._process = subprocess.Popen(
            [sys.executable, "-m", "support.emulator_process", json.dumps({"n": n, **options})],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        self._lock = threading.Lock()
        ready = self._read()
        if "device_path" not in ready:
            self.stop()
            raise RuntimeError(f"the emulator process did not start: {ready}")
        self.device_path: str = ready["device_path"]

    def _read(self) -> dict[str, Any]:
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        if not line:
            raise RuntimeError(f"the emulator process exited ({self._process.poll()}); see the test's stderr")
        reply: dict[str, Any] = json.loads(line)
        return reply

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """Call ``method`` on the emulator in the child; its exceptions come back as RuntimeError."""
        assert self._process.stdin is not None
        with self._lock:
            self._process.stdin.write(json.dumps({"method": method, "args": args, "kwargs": kwargs}) + "\n")
            self._process.stdin.flush()
            reply = self._read()
        if "error" in reply:
            raise RuntimeError(f"emulator.{method}: {reply['error']}")
        return _decode(reply["result"])

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or not callable(getattr(ArmEmulator, name, None)):
            raise AttributeError(name)
        return lambda *args, **kwargs: self.call(name, *args, **kwargs)

    def stop(self) -> None:
        if self._process.poll() is None:
            assert self._process.stdin is not None
            self._process.stdin.close()  # the child stops its emulator and exits at end of input
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        if self._process.stdout is not None:
            self._process.stdout.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


def _serve(options: dict[str, Any]) -> int:
    emulator = ArmEmulator(**options)
    emulator.start()
    try:
        print(json.dumps({"device_path": emulator.device_path}), flush=True)
        for line in sys.stdin:
            request = json.loads(line)
            try:
                result = getattr(emulator, request["method"])(*request["args"], **request["kwargs"])
                reply = {"result": _encode(result)}
            except Exception as exc:  # noqa: BLE001 - reported to the test, which raises it
                reply = {"error": f"{type(exc).__name__}: {exc}"}
            print(json.dumps(reply), flush=True)
    finally:
        emulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(_serve(json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}))
