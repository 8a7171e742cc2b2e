"""GDK custom build: ``gdk component build`` runs this in a component folder.

It writes what GDK expects:

* ``greengrass-build/recipes/recipe.yaml``: the component's recipe, version filled in;
* ``greengrass-build/artifacts/<name>/<version>/``: the vla-edge wheel the recipe installs.

The wheel is built once from the project root (the folder holding ``pyproject.toml``).
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import yaml

from vla_edge.errors import ConfigurationError

log = logging.getLogger(__name__)


def project_root(start: Path) -> Path:
    for folder in (start, *start.parents):
        if (folder / "pyproject.toml").is_file():
            return folder
    raise ConfigurationError(f"no pyproject.toml above {start}; run the build inside the vla-edge checkout")


def build(component_dir: Path) -> Path:
    config_path = component_dir / "gdk-config.json"
    recipe_path = component_dir / "recipe.yaml"
    if not config_path.is_file() or not recipe_path.is_file():
        raise ConfigurationError(f"{component_dir} needs gdk-config.json and recipe.yaml")
    (name, settings), = json.loads(config_path.read_text())["component"].items()
    recipe = yaml.safe_load(recipe_path.read_text())
    if recipe.get("ComponentName") != name:
        raise ConfigurationError(f"recipe names {recipe.get('ComponentName')!r} but gdk-config.json names {name!r}")
    version = settings.get("version", "NEXT_PATCH")
    if version == "NEXT_PATCH":
        version = str(recipe["ComponentVersion"])  # GDK publish assigns the next patch; build uses the recipe's
    recipe["ComponentVersion"] = version
    out = component_dir / "greengrass-build"
    shutil.rmtree(out, ignore_errors=True)
    (out / "recipes").mkdir(parents=True)
    artifacts = out / "artifacts" / name / version
    artifacts.mkdir(parents=True)
    (out / "recipes" / "recipe.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
    if any("Artifacts" in manifest for manifest in recipe.get("Manifests", [])):
        root = project_root(component_dir.resolve())
        subprocess.run(  # noqa: S603
            [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(artifacts), str(root)],
            check=True,
        )
    log.info("built %s %s into %s", name, version, out)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="GDK custom build for a vla-edge component folder")
    parser.add_argument("--component-dir", type=Path, default=Path.cwd())
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        build(args.component_dir)
    except (ConfigurationError, subprocess.CalledProcessError) as exc:
        log.error("build failed: %s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
