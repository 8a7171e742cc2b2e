"""Everything a local deployment with ``greengrass-cli`` needs, in one folder.

``python -m vla_edge.packaging.local_deploy`` runs the GDK build (:mod:`.gdk_build`) of the suite
and of each component folder, then lays the results out the way ``greengrass-cli deployment
create`` reads them::

    greengrass-build/local-deployment/
      recipes/<ComponentName>-<ComponentVersion>.yaml
      artifacts/<ComponentName>/<ComponentVersion>/<files>

and prints the command that deploys the suite on this device::

    sudo /greengrass/v2/bin/greengrass-cli deployment create \\
      --recipeDir greengrass-build/local-deployment/recipes \\
      --artifactDir greengrass-build/local-deployment/artifacts \\
      --merge "com.vlaedge.Suite=0.1.0"

The inference recipe names its images by placeholder. ``--image cpu=REF`` (and ``cuda=``,
``jetson=``) fills a variant in: a reference pinned by digest (``REPO@sha256:...``) stays a
``docker:`` artifact that the nucleus pulls; any other reference (a local tag such as
``vla-edge/inference-cpu:dev``, built or loaded on this device) is run as it is, and that
manifest's ``docker:`` artifact is dropped, since there is nothing to pull.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import shutil
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from vla_edge.errors import ConfigurationError
from vla_edge.packaging import gdk_build, recipes

SUITE = "com.vlaedge.Suite"
DEFAULT_OUT = Path("greengrass-build") / "local-deployment"
GREENGRASS_CLI = "/greengrass/v2/bin/greengrass-cli"

log = logging.getLogger(__name__)


def component_dirs(root: Path) -> list[Path]:
    return [root, *sorted(path.parent for path in root.glob("components/*/gdk-config.json"))]


def apply_images(recipe: dict[str, Any], images: Mapping[str, str]) -> dict[str, Any]:
    """The recipe with the given variants' placeholders replaced (see the module docstring)."""
    for variant in images:
        recipes.placeholder(variant)
    for manifest in recipe.get("Manifests", []):
        setenv = manifest.get("Lifecycle", {}).get("Setenv", {})
        current = str(setenv.get("VLA_EDGE_IMAGE", ""))
        (variant,) = recipes.placeholders_in(current) or {None}
        if variant is None or variant not in images:
            continue
        reference = images[variant]
        setenv["VLA_EDGE_IMAGE"] = reference
        artifacts = [a for a in manifest.get("Artifacts", []) if a.get("URI") != f"docker:{current}"]
        if recipes.IMAGE_REFERENCE.match(reference):
            artifacts.append({"URI": f"docker:{reference}"})
        if artifacts:
            manifest["Artifacts"] = artifacts
        else:
            manifest.pop("Artifacts", None)
    return recipe


def collect(root: Path, out: Path, images: Mapping[str, str] | None = None) -> dict[str, str]:
    """Build every component and lay it out under ``out``; returns component name -> version.

    All builds come first: the suite's build replaces ``<root>/greengrass-build``, where ``out`` is by default.
    """
    built = [gdk_build.build(folder) for folder in component_dirs(root)]
    shutil.rmtree(out, ignore_errors=True)
    (out / "recipes").mkdir(parents=True)
    (out / "artifacts").mkdir()
    versions: dict[str, str] = {}
    for build in built:
        recipe = yaml.safe_load((build / "recipes" / "recipe.yaml").read_text())
        name, version = recipe["ComponentName"], str(recipe["ComponentVersion"])
        if images and name == "com.vlaedge.Inference":
            recipe = apply_images(recipe, images)
        (out / "recipes" / f"{name}-{version}.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False, width=120))
        source = build / "artifacts" / name / version
        if any(source.iterdir()):
            shutil.copytree(source, out / "artifacts" / name / version)
        versions[name] = version
    return versions


def deploy_command(out: Path, versions: Mapping[str, str]) -> str:
    return shlex.join([
        "sudo", GREENGRASS_CLI, "deployment", "create",
        "--recipeDir", str(out / "recipes"), "--artifactDir", str(out / "artifacts"),
        "--merge", f"{SUITE}={versions[SUITE]}",
    ])


def parse_images(values: Sequence[str]) -> dict[str, str]:
    images = {}
    for value in values:
        variant, sep, reference = value.partition("=")
        if not sep or not reference:
            raise ConfigurationError(f"--image {value!r}: expected VARIANT=REFERENCE, e.g. cpu=vla-edge/inference-cpu:dev")
        recipes.placeholder(variant)
        images[variant] = reference
    return images


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build every vla-edge component for greengrass-cli deployment create")
    parser.add_argument("--root", type=Path, default=None, help="the checkout (default: the folder holding pyproject.toml)")
    parser.add_argument("--out", type=Path, default=None, help=f"output folder (default: <root>/{DEFAULT_OUT})")
    parser.add_argument("--image", action="append", default=[], metavar="VARIANT=REF",
                        help="inference image of a variant (cpu, cuda, jetson); repeatable")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        root = (args.root or gdk_build.project_root(Path.cwd())).resolve()
        out = (args.out or root / DEFAULT_OUT).resolve()
        versions = collect(root, out, parse_images(args.image))
    except ConfigurationError as exc:
        log.error("%s", exc)
        return 1
    print(f"components: {', '.join(f'{name} {version}' for name, version in versions.items())}")
    print("deploy on this device with:")
    print(f"  {deploy_command(out, versions)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
