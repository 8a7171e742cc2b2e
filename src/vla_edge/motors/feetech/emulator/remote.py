"""The arm emulator in a child process, driven over a JSON-lines pipe.

Why a process: in the process of the actuator under test (or of ``vla-edge up``, or of a
benchmark) the emulator's serving thread competes for the GIL, so on a busy machine a status
packet can miss the actuator's packet timeout for reasons no real servo has. In a process of
its own it answers like a servo on its own microcontroller.

:class:`RemoteArmEmulator` starts ``vla-edge emulate-arm --control`` and offers the test hooks of
:class:`~vla_edge.motors.feetech.emulator.ArmEmulator` (every public method, called by name) plus
:attr:`~RemoteArmEmulator.device_path`. Requests and answers are single JSON lines (never
pickle): ``{"method", "args", "kwargs"}`` in, ``{"result"}`` or ``{"error"}`` out; dicts keyed by
servo id, tuples and snapshots are tagged so they come back as they left (:func:`encode`,
:func:`decode`). The child stops when its standard input closes, so it never outlives its parent.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import IO, Any, Self

from vla_edge.errors import VlaEdgeError
from vla_edge.motors.feetech.emulator.arm import ArmEmulator, ServoSnapshot


def encode(value: Any) -> Any:
    """A JSON-ready form of what an emulator hook returns."""
    if isinstance(value, ServoSnapshot):
        return {"snapshot": dataclasses.asdict(value)}
    if isinstance(value, dict):
        return {"by_id": [[key, encode(item)] for key, item in value.items()]}
    if isinstance(value, tuple):
        return {"tuple": [encode(item) for item in value]}
    if isinstance(value, list):
        return [encode(item) for item in value]
    return value


def decode(value: Any) -> Any:
    """The inverse of :func:`encode`."""
    if isinstance(value, dict) and "snapshot" in value:
        return ServoSnapshot(**value["snapshot"])
    if isinstance(value, dict) and "by_id" in value:
        return {int(key): decode(item) for key, item in value["by_id"]}
    if isinstance(value, dict) and "tuple" in value:
        return tuple(decode(item) for item in value["tuple"])
    if isinstance(value, list):
        return [decode(item) for item in value]
    return value


def serve_control(emulator: ArmEmulator, requests: IO[str], replies: IO[str]) -> None:
    """Answer hook calls from ``requests`` on ``replies`` until ``requests`` ends."""
    for line in requests:
        try:
            request = json.loads(line)
            method = request["method"]
            if method.startswith("_") or not callable(getattr(ArmEmulator, method, None)):
                raise AttributeError(f"ArmEmulator has no hook {method!r}")
            reply = {"result": encode(getattr(emulator, method)(*request["args"], **request["kwargs"]))}
        except Exception as exc:  # noqa: BLE001 - sent back to the caller, which raises it there
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        replies.write(json.dumps(reply) + "\n")
        replies.flush()


class RemoteArmEmulator:
    """An :class:`ArmEmulator` serving a pseudo-terminal from a child process (see the module docstring)."""

    def __init__(self, servos: int = 6, extra_args: list[str] | None = None) -> None:
        self.process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "vla_edge", "emulate-arm", "--control", "--servos", str(servos), *(extra_args or [])],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,  # Ctrl-C reaches the parent, which stops the emulator in order
        )
        self._lock = threading.Lock()
        self.device_path = self._readline().strip()
        if not self.device_path:
            self.stop()
            raise VlaEdgeError("the arm emulator did not print its device path; run `vla-edge emulate-arm` to see why")

    def _readline(self) -> str:
        assert self.process.stdout is not None
        return self.process.stdout.readline()

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """Call hook ``method`` in the child; its exceptions come back as :class:`VlaEdgeError`."""
        assert self.process.stdin is not None
        with self._lock:
            try:
                self.process.stdin.write(json.dumps({"method": method, "args": args, "kwargs": kwargs}) + "\n")
                self.process.stdin.flush()
            except (BrokenPipeError, ValueError) as exc:
                raise VlaEdgeError(f"the arm emulator process is gone (exit {self.process.poll()})") from exc
            line = self._readline()
        if not line:
            raise VlaEdgeError(f"the arm emulator process exited ({self.process.poll()}) during {method}()")
        reply = json.loads(line)
        if "error" in reply:
            raise VlaEdgeError(f"emulator.{method}: {reply['error']}")
        return decode(reply["result"])

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name.startswith("_") or not callable(getattr(ArmEmulator, name, None)):
            raise AttributeError(name)
        return lambda *args, **kwargs: self.call(name, *args, **kwargs)

    def stop(self, timeout_s: float = 10.0) -> None:
        """Close the control pipe (the child stops its emulator and exits), then wait for it."""
        if self.process.poll() is None and self.process.stdin is not None:
            try:
                self.process.stdin.close()
            except BrokenPipeError:
                pass  # it is already gone
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()
