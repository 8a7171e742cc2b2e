"""Pinned dependencies: one pip constraints file per installable extra.

``python -m vla_edge.packaging.constraints`` writes ``packaging/constraints/<extra>.txt`` for the
camera, actuator, updater and inference extras: every distribution that ``vla-edge[<extra>]``
needs, directly or transitively, pinned with ``==`` to the version installed in the running
environment. The requirements come from ``pyproject.toml`` (the checkout, not a possibly stale
installed copy) and then from each installed distribution's metadata, with environment markers
evaluated for this interpreter and platform (named in each file's header). A requirement whose
installed version is outside its range stops the generator; one that is not installed here (an
extra of a dependency that this environment skipped) is named in the file's header as unpinned.

The Greengrass recipes install a component's wheel with ``pip install -c constraints.txt`` (the GDK
build ships the file next to the wheel), and the inference images use ``inference.txt``. A
constraints file only pins what gets installed: a package that a device's platform needs and this
one does not (a different marker branch) is installed unpinned.

``--check`` compares instead of writing and exits 1 when a committed file is out of date.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import platform
import sys
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from vla_edge.errors import ConfigurationError

PROJECT = "vla-edge"
EXTRAS = ("camera", "actuator", "updater", "inference")
CONSTRAINTS_DIR = Path("packaging") / "constraints"


@dataclass(frozen=True)
class Pin:
    name: str
    version: str
    required_by: str

    def line(self) -> str:
        return f"{self.name}=={self.version}"


@dataclass(frozen=True)
class Closure:
    pins: list[Pin]
    unpinned: list[str]
    """Requirements not installed here, as ``requirement (needed by parent)``."""


def project_requirements(pyproject: Path, extra: str) -> list[Requirement]:
    """The base dependencies plus those of ``extra`` (self-references like ``vla-edge[a,b]`` expanded)."""
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    optional: Mapping[str, list[str]] = project.get("optional-dependencies", {})
    if extra not in optional:
        raise ConfigurationError(f"{pyproject} has no extra {extra!r}; it has {sorted(optional)}")
    requirements = [Requirement(text) for text in project.get("dependencies", [])]
    pending, seen = [extra], set()
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        for text in optional.get(name, []):
            requirement = Requirement(text)
            if canonicalize_name(requirement.name) == PROJECT:
                pending.extend(requirement.extras)
            else:
                requirements.append(requirement)
    return requirements


def applies(requirement: Requirement, extras: Iterable[str], environment: Mapping[str, str]) -> bool:
    """Whether ``requirement`` is needed here when its parent is installed with ``extras``."""
    if requirement.marker is None:
        return True
    return any(requirement.marker.evaluate({**environment, "extra": extra}) for extra in (*extras, ""))


def installed_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def resolve(requirements: Sequence[Requirement], environment: Mapping[str, str] | None = None,
            version_of=installed_version, requires_of=importlib.metadata.requires) -> list[Pin]:
    """The transitive closure of ``requirements`` over installed metadata, pinned to installed versions.

    Raises ConfigurationError naming every requirement that is missing or out of range.
    """
    environment = dict(environment or default_environment())
    pins: dict[str, Pin] = {}
    expanded: set[tuple[str, frozenset[str]]] = set()
    problems: list[str] = []
    missing: set[str] = set()
    queue: list[tuple[Requirement, frozenset[str], str]] = [(r, frozenset(), PROJECT) for r in requirements]
    while queue:
        requirement, parent_extras, parent = queue.pop(0)
        if not applies(requirement, parent_extras, environment):
            continue
        name = canonicalize_name(requirement.name)
        version = version_of(requirement.name)
        if version is None:
            missing.add(f"{name} (needed by {parent})")
            continue
        if requirement.specifier and not requirement.specifier.contains(Version(version), prereleases=True):
            problems.append(f"{requirement} (needed by {parent}) but {version} is installed")
        pins.setdefault(name, Pin(name, version, parent))
        key = (name, frozenset(requirement.extras))
        if key in expanded:
            continue
        expanded.add(key)
        for text in requires_of(requirement.name) or []:
            queue.append((Requirement(text), frozenset(requirement.extras), name))
    if problems:
        raise ConfigurationError(
            "cannot pin the dependencies from this environment: " + "; ".join(sorted(set(problems)))
            + ". Install versions inside the ranges first (pip install -e '.[all]')."
        )
    pinned = set(pins)
    unpinned = sorted(item for item in missing if item.split(" ", 1)[0] not in pinned)
    return Closure(sorted(pins.values(), key=lambda pin: pin.name), unpinned)


def render(extra: str, closure: Closure, environment: Mapping[str, str] | None = None) -> str:
    environment = environment or default_environment()
    header = [
        f"# Pinned dependencies of vla-edge[{extra}]: the full transitive closure, one `==` pin each.",
        "# Generated by `python -m vla_edge.packaging.constraints` from pyproject.toml and the versions",
        f"# installed on CPython {environment['python_version']} {environment['sys_platform']}"
        f" {environment['platform_machine']} (markers evaluated there). Do not edit by hand.",
        f"# Use: pip install -c {extra}.txt \"vla_edge-<version>-py3-none-any.whl[{extra}]\"",
    ]
    if closure.unpinned:
        header.append("# Not installed where generated, so not pinned: " + ", ".join(closure.unpinned))
    return "\n".join([*header, *(pin.line() for pin in closure.pins)]) + "\n"


def generate(root: Path, extras: Sequence[str] = EXTRAS) -> dict[Path, str]:
    """File path -> content for each extra's constraints file under ``root``."""
    return {
        root / CONSTRAINTS_DIR / f"{extra}.txt": render(extra, resolve(project_requirements(root / "pyproject.toml", extra)))
        for extra in extras
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write (or --check) the pinned constraints file of each extra")
    parser.add_argument("--root", type=Path, default=None, help="the checkout (default: the folder holding pyproject.toml)")
    parser.add_argument("--check", action="store_true", help="exit 1 when a file differs from what would be written")
    parser.add_argument("extras", nargs="*", default=list(EXTRAS))
    args = parser.parse_args(argv)
    from vla_edge.packaging.gdk_build import project_root

    try:
        root = args.root or project_root(Path.cwd().resolve())
        files = generate(root, args.extras)
    except ConfigurationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    stale = []
    for path, text in files.items():
        current = path.read_text(encoding="utf-8") if path.is_file() else None
        if current == text:
            continue
        if args.check:
            stale.append(str(path))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path}")
    if stale:
        print(f"out of date (run python -m vla_edge.packaging.constraints on {platform.machine()}): {stale}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
