"""GDK custom build: ``gdk component build`` runs this in a component folder.

It writes what GDK expects:

* ``greengrass-build/recipes/recipe.yaml``: the component's recipe, version filled in;
* ``greengrass-build/artifacts/<name>/<version>/``: every file the recipe's ``s3://`` artifacts name:
  the vla-edge wheel (built from the project root, the folder holding ``pyproject.toml``) and
  ``constraints.txt``, the pinned dependencies of the extra the install script names
  (``packaging/constraints/<extra>.txt``, see :mod:`vla_edge.packaging.constraints`).

The built wheel's file name replaces the one the recipe names (URIs and scripts), so the recipe
always installs the wheel that was built; the checked-in recipes name pyproject's version too.
``docker:`` artifacts are pulled by the nucleus and need no file. GDK replaces ``BUCKET_NAME``,
``COMPONENT_NAME`` and ``COMPONENT_VERSION`` in the URIs when it publishes.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from vla_edge.errors import ConfigurationError

log = logging.getLogger(__name__)

ARTIFACT_PREFIX = "s3://BUCKET_NAME/COMPONENT_NAME/COMPONENT_VERSION/"
WHEEL = re.compile(r"vla_edge-[^/\s\"'\[\]]+-py3-none-any\.whl")
WHEEL_EXTRA = re.compile(r"vla_edge-[^/\s\"'\[\]]+-py3-none-any\.whl\[([a-z0-9_-]+)\]")
CONSTRAINTS = "constraints.txt"


def project_root(start: Path) -> Path:
    for folder in (start, *start.parents):
        if (folder / "pyproject.toml").is_file():
            return folder
    raise ConfigurationError(f"no pyproject.toml above {start}; run the build inside the vla-edge checkout")


def artifact_files(recipe: dict[str, Any]) -> list[str]:
    """File names of the recipe's ``s3://`` artifacts (each manifest lists the same ones)."""
    names: list[str] = []
    for manifest in recipe.get("Manifests", []):
        for artifact in manifest.get("Artifacts", []) or []:
            uri = str(artifact.get("URI", ""))
            if uri.startswith("docker:"):
                continue
            if not uri.startswith(ARTIFACT_PREFIX) or "/" in uri[len(ARTIFACT_PREFIX):]:
                raise ConfigurationError(f"artifact {uri!r} must be {ARTIFACT_PREFIX}<file> (GDK fills in the rest)")
            name = uri[len(ARTIFACT_PREFIX):]
            if name not in names:
                names.append(name)
    return names


def wheel_extras(recipe: dict[str, Any]) -> set[str]:
    """The extras the recipe's scripts install the wheel with (``...whl[camera]``)."""
    return set(WHEEL_EXTRA.findall(json.dumps(recipe)))


def replace_strings(value: Any, old: str, new: str) -> Any:
    if isinstance(value, str):
        return value.replace(old, new)
    if isinstance(value, dict):
        return {key: replace_strings(item, old, new) for key, item in value.items()}
    if isinstance(value, list):
        return [replace_strings(item, old, new) for item in value]
    return value


def build_wheel(root: Path, into: Path) -> str:
    subprocess.run(  # noqa: S603
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(into), str(root)],
        check=True,
    )
    wheels = sorted(path.name for path in into.glob("vla_edge-*-py3-none-any.whl"))
    if len(wheels) != 1:
        raise ConfigurationError(f"expected one vla-edge wheel in {into}, found {wheels}")
    return wheels[0]


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
    files = artifact_files(recipe)
    unknown = [file for file in files if file != CONSTRAINTS and not WHEEL.fullmatch(file)]
    if unknown:
        raise ConfigurationError(f"the build cannot produce artifacts {unknown}: only the vla-edge wheel and {CONSTRAINTS}")
    out = component_dir / "greengrass-build"
    shutil.rmtree(out, ignore_errors=True)
    (out / "recipes").mkdir(parents=True)
    artifacts = out / "artifacts" / name / version
    artifacts.mkdir(parents=True)
    root = project_root(component_dir.resolve()) if files else None
    for file in files:
        if file == CONSTRAINTS:
            extras = wheel_extras(recipe)
            if len(extras) != 1:
                raise ConfigurationError(f"{CONSTRAINTS} needs the install script to name one wheel extra, found {extras}")
            (extra,) = extras
            source = root / "packaging" / "constraints" / f"{extra}.txt"
            if not source.is_file():
                raise ConfigurationError(f"{source} is missing; run python -m vla_edge.packaging.constraints")
            shutil.copyfile(source, artifacts / CONSTRAINTS)
        else:
            built = build_wheel(root, artifacts)
            if built != file:
                log.info("the recipe names %s; it now names the built %s", file, built)
                recipe = replace_strings(recipe, file, built)
    (out / "recipes" / "recipe.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False, width=120))
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
