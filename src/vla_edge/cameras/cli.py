"""``vla-edge camera list`` and ``vla-edge camera snap NAME``.

``snap`` takes the frame from the running camera component's shared-memory ring when
there is one (a USB camera can be opened by one process only, and the component has
it); otherwise it opens the camera from its configuration and grabs one frame.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import yaml

from vla_edge.errors import VlaEdgeError

log = logging.getLogger("vla_edge.camera")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vla-edge camera", description="Inspect the cameras of this machine.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    commands.add_parser("list", help="V4L2 cameras with their pixel formats and frame sizes")
    snap = commands.add_parser("snap", help="write one frame of a configured camera to an image file")
    snap.add_argument("name", help="camera name from the camera component's configuration, e.g. front")
    snap.add_argument("-o", "--output", type=Path, help="image file (.png or .jpg; default NAME.png)")
    snap.add_argument("--config", type=Path, help="camera component configuration (YAML/JSON); default: the recipe's")
    snap.add_argument("--frame-dir", type=Path, help="where a running camera component keeps its frame rings")
    snap.add_argument("--recipes", type=Path, help="folder of component recipes (default: ./components)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        if args.command == "list":
            return _list()
        return _snap(args)
    except VlaEdgeError as exc:
        log.error("%s", exc)
        return 1


def _list() -> int:
    from vla_edge.cameras.discovery import format_device_table, list_v4l2_devices

    sys.stdout.write(format_device_table(list_v4l2_devices()) + "\n")
    return 0


def _component_config(args: argparse.Namespace) -> object:
    from vla_edge.components.base import load_config
    from vla_edge.components.camera.config import CameraComponentConfig

    if args.config is not None:
        raw = yaml.safe_load(args.config.read_text()) or {}
    else:
        from vla_edge.core.recipes import load_recipe
        from vla_edge.up import find_recipes_dir

        raw = load_recipe(find_recipes_dir(args.recipes) / "camera" / "recipe.yaml").default_configuration
    return load_config(CameraComponentConfig, raw)


def _snap(args: argparse.Namespace) -> int:
    from vla_edge.cameras.discovery import grab_frame, write_image
    from vla_edge.cameras.ring import FrameRingReader

    config = _component_config(args)
    cameras = {camera.name: camera for camera in config.cameras}  # type: ignore[attr-defined]
    if args.name not in cameras:
        log.error("no camera %r in the configuration; configured: %s", args.name, ", ".join(sorted(cameras)))
        return 2
    output = args.output or Path(f"{args.name}.png")
    ring = (args.frame_dir or Path(config.frame_dir)) / f"{args.name}.ring"  # type: ignore[attr-defined]
    image = None
    if ring.exists():
        reader = FrameRingReader.open(ring)
        try:
            frame = reader.latest()
        finally:
            reader.close()
        if frame is not None:
            image = frame.image
            log.info("frame %d of the running camera component (%s)", frame.seq, ring)
    if image is None:
        image = grab_frame(cameras[args.name])
        log.info("grabbed one frame from %s", cameras[args.name].source)
    write_image(output, image)
    sys.stdout.write(f"{output}\n")
    return 0
