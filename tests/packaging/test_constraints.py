"""The committed constraints files pin every transitive requirement of each extra with ``==``."""

from __future__ import annotations

from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from vla_edge.errors import ConfigurationError
from vla_edge.packaging import constraints

ROOT = Path(__file__).resolve().parents[2]


def pins_of(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        name, sep, version = line.partition("==")
        assert sep and name == canonicalize_name(name) and version, f"{path.name}: {line!r} is not a `name==version` pin"
        pins[name] = version
    return pins


@pytest.mark.parametrize("extra", constraints.EXTRAS)
def test_every_direct_requirement_is_pinned_inside_its_pyproject_range(extra: str) -> None:
    pins = pins_of(ROOT / constraints.CONSTRAINTS_DIR / f"{extra}.txt")
    for requirement in constraints.project_requirements(ROOT / "pyproject.toml", extra):
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{extra}.txt does not pin {requirement}"
        assert requirement.specifier.contains(Version(pins[name]), prereleases=True), (extra, requirement, pins[name])


@pytest.mark.parametrize("extra", constraints.EXTRAS)
def test_committed_files_are_what_the_generator_writes(extra: str) -> None:
    path = ROOT / constraints.CONSTRAINTS_DIR / f"{extra}.txt"
    drifted = {
        name: (version, installed)
        for name, version in pins_of(path).items()
        if (installed := constraints.installed_version(name)) != version
    }
    if drifted:
        pytest.skip(f"this environment is not the one {path.name} was generated in (pinned vs installed: "
                    f"{dict(list(drifted.items())[:5])}); regenerate with python -m vla_edge.packaging.constraints")
    (text,) = constraints.generate(ROOT, [extra]).values()
    assert path.read_text() == text, "out of date: run python -m vla_edge.packaging.constraints"


def test_components_without_torch_stay_small() -> None:
    for extra in ("camera", "actuator", "updater"):
        assert "torch" not in pins_of(ROOT / constraints.CONSTRAINTS_DIR / f"{extra}.txt"), extra


FAKE_REQUIRES = {
    "top": ["mid>=1", 'winonly; sys_platform == "win32"', 'opt>=2; extra == "fast"'],
    "mid": ["leaf<3"],
    "leaf": [],
    "opt": [],
}
FAKE_VERSIONS = {"top": "1.0", "mid": "1.5", "leaf": "2.9", "opt": "2.1"}
LINUX = {"python_version": "3.11", "sys_platform": "linux", "platform_machine": "x86_64"}


def fake_resolve(*texts: str, versions: dict[str, str] = FAKE_VERSIONS) -> constraints.Closure:
    from packaging.markers import default_environment

    return constraints.resolve(
        [Requirement(t) for t in texts], {**default_environment(), **LINUX},
        version_of=versions.get, requires_of=lambda name: FAKE_REQUIRES.get(name, []),
    )


def test_resolve_walks_the_closure_with_markers_and_extras() -> None:
    closure = fake_resolve("top")
    assert [pin.line() for pin in closure.pins] == ["leaf==2.9", "mid==1.5", "top==1.0"]
    closure = fake_resolve("top[fast]")
    assert [pin.name for pin in closure.pins] == ["leaf", "mid", "opt", "top"]


def test_resolve_refuses_versions_outside_their_range_and_names_missing_ones() -> None:
    with pytest.raises(ConfigurationError, match=r"leaf<3 \(needed by mid\) but 3.0 is installed"):
        fake_resolve("top", versions={**FAKE_VERSIONS, "leaf": "3.0"})
    closure = fake_resolve("top", versions={k: v for k, v in FAKE_VERSIONS.items() if k != "leaf"})
    assert closure.unpinned == ["leaf (needed by mid)"]
    assert "not pinned: leaf (needed by mid)" in constraints.render("x", closure)
