"""``vla-edge emulate-arm``: serve an emulated SO-101 servo chain on a pseudo-terminal.

The first line of standard output is the serial device path and nothing else, so a
script can read it and hand it to the actuator (``serialPort``). The emulator then
serves until SIGINT or SIGTERM and exits 0. With ``--control`` it also answers test-hook
calls, one JSON line each, on standard input and output, and stops when standard input
ends (see :mod:`vla_edge.motors.feetech.emulator.remote`).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from vla_edge.motors.feetech.emulator import ArmEmulator, ServoPhysics
from vla_edge.motors.feetech.emulator.remote import serve_control

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vla-edge emulate-arm",
        description="Emulate Feetech STS3215 servos on a pseudo-terminal; prints the device path first.",
    )
    parser.add_argument("--servos", type=int, default=6, help="number of servos (default 6)")
    parser.add_argument("--first-id", type=int, default=1, help="id of the first servo (default 1)")
    parser.add_argument("--position", type=int, default=2048, help="initial position in ticks (default 2048)")
    defaults = ServoPhysics()
    parser.add_argument(
        "--speed",
        type=float,
        default=defaults.max_speed,
        help=f"no-load top speed in ticks/s (default {defaults.max_speed:.0f}: STS3215, 0.222 s/60° at 12 V)",
    )
    parser.add_argument(
        "--acceleration",
        type=float,
        default=defaults.max_acceleration,
        help=f"acceleration in ticks/s² when the Acceleration register is 0 (default {defaults.max_acceleration:.0f})",
    )
    parser.add_argument(
        "--voltage", type=float, default=defaults.supply_voltage, help="supply voltage in volts (default 12)"
    )
    parser.add_argument(
        "--control",
        action="store_true",
        help="answer test-hook calls (JSON lines) on stdin/stdout; stop when stdin closes",
    )
    parser.add_argument("--log-level", default="WARNING", help="logging level on stderr (default WARNING)")
    return parser


def _control(emulator: ArmEmulator, stop: threading.Event) -> None:
    try:
        serve_control(emulator, sys.stdin, sys.stdout)
    finally:
        stop.set()  # the controlling process closed the pipe (or died): nobody is left to serve


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        emulator = ArmEmulator(
            args.servos,
            first_id=args.first_id,
            initial_position=args.position,
            speed_ticks_per_s=args.speed,
            acceleration_ticks_per_s2=args.acceleration,
        )
    except ValueError as exc:
        log.error("%s", exc)
        return 2
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %d: stopping the emulator", signum)
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with emulator:
            emulator.set_voltage(args.voltage)
            sys.stdout.write(emulator.device_path + "\n")
            sys.stdout.flush()
            if args.control:
                threading.Thread(target=_control, args=(emulator, stop), name="emulator-control", daemon=True).start()
            while not stop.wait(0.5):
                pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


if __name__ == "__main__":
    sys.exit(main())
