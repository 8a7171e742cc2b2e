"""``gdk component build`` in each component folder: the gdk-config.json's custom build command.

GDK itself is not installed in CI: the test runs exactly the ``custom_build_command`` that GDK
would run, in the component folder of a copy of the checkout, and checks what GDK then reads
from ``greengrass-build/``. Building the wheel takes seconds per component.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from support.gdk import gdk_schema, lower_keys

from vla_edge.errors import ConfigurationError
from vla_edge.packaging import gdk_build

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = sorted(p.parent.relative_to(ROOT) for p in [ROOT / "recipe.yaml", *ROOT.glob("components/*/recipe.yaml")])
PREFIX = "s3://BUCKET_NAME/COMPONENT_NAME/COMPONENT_VERSION/"


@pytest.fixture(scope="module")
def checkout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The files a build reads: pyproject, sources, constraints, component folders (no .git, no build output)."""
    copy = tmp_path_factory.mktemp("checkout")
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "greengrass-build", "build", "dist")
    for name in ("pyproject.toml", "README.md", "recipe.yaml", "gdk-config.json"):
        shutil.copy2(ROOT / name, copy / name)
    for name in ("src", "packaging", "components"):
        shutil.copytree(ROOT / name, copy / name, ignore=ignore)
    return copy


@pytest.mark.parametrize("folder", FOLDERS, ids=str)
def test_gdk_custom_build_writes_recipe_and_artifacts(checkout: Path, folder: Path) -> None:
    component_dir = checkout / folder
    (name, settings), = json.loads((component_dir / "gdk-config.json").read_text())["component"].items()
    build = settings["build"]
    assert build["build_system"] == "custom"
    command = [sys.executable if part in ("python", "python3") else part for part in build["custom_build_command"]]
    subprocess.run(command, cwd=component_dir, check=True, timeout=300)

    out = component_dir / "greengrass-build"
    recipe = yaml.safe_load((out / "recipes" / "recipe.yaml").read_text())
    source = yaml.safe_load((component_dir / "recipe.yaml").read_text())
    assert recipe["ComponentName"] == name
    assert recipe["ComponentVersion"] == source["ComponentVersion"]
    assert (out / "recipes" / "recipe.yaml").stat().st_size < 16_000
    schema = gdk_schema("recipe_schema.json")
    if schema is not None:
        import jsonschema

        jsonschema.Draft7Validator(schema).validate(lower_keys(recipe))
    artifacts = out / "artifacts" / name / recipe["ComponentVersion"]
    named = {
        artifact["URI"][len(PREFIX):]
        for manifest in recipe["Manifests"]
        for artifact in manifest.get("Artifacts", [])
        if not artifact["URI"].startswith("docker:")
    }
    assert all(not uri.startswith("s3://") or uri.startswith(PREFIX)
               for manifest in recipe["Manifests"] for uri in (a["URI"] for a in manifest.get("Artifacts", [])))
    assert {path.name for path in artifacts.iterdir()} == named
    if "constraints.txt" in named:
        extra = gdk_build.wheel_extras(recipe)
        (extra_name,) = extra
        assert (artifacts / "constraints.txt").read_text() == (
            ROOT / "packaging" / "constraints" / f"{extra_name}.txt").read_text()
        wheel = next(n for n in named if n.endswith(".whl"))
        assert f"{wheel}[{extra_name}]" in json.dumps(recipe)


def test_build_refuses_artifacts_it_cannot_produce(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[project]\nname='x'\nversion='1'\n")
    component = tmp_path / "c"
    component.mkdir()
    (component / "gdk-config.json").write_text(json.dumps({"component": {"com.example.C": {"version": "1.0.0"}}}))
    (component / "recipe.yaml").write_text(yaml.safe_dump({
        "RecipeFormatVersion": "2020-01-25", "ComponentName": "com.example.C", "ComponentVersion": "1.0.0",
        "Manifests": [{"Platform": {"os": "linux"}, "Artifacts": [{"URI": PREFIX + "model.zip"}]}],
    }))
    with pytest.raises(ConfigurationError, match="model.zip"):
        gdk_build.build(component)
    assert gdk_build.main(["--component-dir", str(component)]) == 1


def test_greengrass_build_output_is_ignored_by_git() -> None:
    assert "greengrass-build/" in (ROOT / ".gitignore").read_text().splitlines()
