"""Read Greengrass component recipes: the identity and default configuration the local core serves.

Only what the nucleus itself takes from a recipe for IPC matters here: the
component's name and version, and ``ComponentConfiguration.DefaultConfiguration``
(which includes ``accessControl``). Lifecycle scripts, manifests and artifacts are
the business of whoever starts the processes.

Recipe *schema* keys are matched case-insensitively, as the nucleus does (GDK
and hand-written recipes differ in case); keys *inside* DefaultConfiguration are
the component's own and keep their case. GDK's ``{COMPONENT_NAME}`` and
``{COMPONENT_VERSION}`` placeholders are resolved from the ``gdk-config.json``
next to the recipe, as ``gdk component build`` would.

Local overrides (``--overrides FILE``, JSON or YAML) map component name to a
configuration fragment deep-merged over the defaults, like a deployment's
``configurationUpdate.merge``. A name that is not a loaded component is an error,
so a typo cannot silently leave the defaults in place.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vla_edge.bus.semantics import deep_merge
from vla_edge.errors import ConfigurationError

NAME_PLACEHOLDER = "{COMPONENT_NAME}"
VERSION_PLACEHOLDER = "{COMPONENT_VERSION}"


@dataclass(frozen=True)
class Recipe:
    """What the core needs from one recipe."""

    name: str
    version: str
    default_configuration: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None


def load_document(path: str | Path) -> Any:
    """Parse a JSON or YAML file (YAML is a superset, but JSON errors read better from ``json``)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if path.suffix.lower() == ".json":
        try:
            return json.loads(text)
        except ValueError as exc:
            raise ConfigurationError(f"{path} is not valid JSON: {exc}") from exc
    import yaml  # PyYAML: a declared dependency; imported here so importing the core stays cheap

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigurationError(f"{path} is not valid YAML: {exc}") from exc


def load_recipe(path: str | Path) -> Recipe:
    """Load one recipe file; every defect is a ConfigurationError naming the file and the key."""
    path = Path(path)
    document = load_document(path)
    if not isinstance(document, Mapping):
        raise ConfigurationError(f"{path}: a recipe must be a mapping, got {type(document).__name__}")
    top = _folded(document)
    name = top.get("componentname")
    version = top.get("componentversion")
    if name == NAME_PLACEHOLDER or version == VERSION_PLACEHOLDER:
        gdk_name, gdk_version = _gdk_identity(path)
        document = _substitute(document, {NAME_PLACEHOLDER: gdk_name, VERSION_PLACEHOLDER: gdk_version})
        top = _folded(document)
        name, version = top.get("componentname"), top.get("componentversion")
    if not isinstance(name, str) or not name.strip():
        raise ConfigurationError(f"{path}: ComponentName is missing or empty")
    if version is None or isinstance(version, (dict, list)):
        raise ConfigurationError(f"{path}: ComponentVersion is missing (e.g. ComponentVersion: \"1.0.0\")")
    configuration: Any = {}
    component_configuration = top.get("componentconfiguration")
    if component_configuration is not None:
        if not isinstance(component_configuration, Mapping):
            raise ConfigurationError(f"{path}: ComponentConfiguration must be a mapping")
        configuration = _folded(component_configuration).get("defaultconfiguration", {})
        if isinstance(configuration, str):  # the recipe schema allows a JSON string here
            try:
                configuration = json.loads(configuration)
            except ValueError as exc:
                raise ConfigurationError(f"{path}: DefaultConfiguration string is not JSON: {exc}") from exc
        if configuration is None:
            configuration = {}
        if not isinstance(configuration, Mapping):
            raise ConfigurationError(f"{path}: DefaultConfiguration must be a mapping, got {configuration!r}")
    return Recipe(name.strip(), str(version), copy.deepcopy(dict(configuration)), path)


def load_overrides(path: str | Path | None) -> dict[str, dict[str, Any]]:
    """Component name -> configuration fragment, from a JSON/YAML file (or nothing)."""
    if path is None:
        return {}
    document = load_document(path)
    if document is None:
        return {}
    if not isinstance(document, Mapping) or not all(isinstance(v, Mapping) for v in document.values()):
        raise ConfigurationError(f"{path}: overrides must map component name -> configuration mapping")
    return {str(name): copy.deepcopy(dict(value)) for name, value in document.items()}


def resolve_configurations(recipes: Sequence[Recipe], overrides: Mapping[str, Mapping[str, Any]] | None = None
                           ) -> dict[str, dict[str, Any]]:
    """Each component's effective configuration: defaults with overrides deep-merged on top."""
    configurations: dict[str, dict[str, Any]] = {}
    for recipe in recipes:
        if recipe.name in configurations:
            raise ConfigurationError(f"component {recipe.name} is given twice ({recipe.path}); pass each recipe once")
        configurations[recipe.name] = copy.deepcopy(recipe.default_configuration)
    for name, fragment in (overrides or {}).items():
        if name not in configurations:
            known = ", ".join(sorted(configurations)) or "none"
            raise ConfigurationError(f"overrides name unknown component {name!r}; loaded components: {known}")
        configurations[name] = deep_merge(configurations[name], fragment)
    return configurations


def _folded(mapping: Mapping[str, Any]) -> dict[str, Any]:
    return {str(key).lower(): value for key, value in mapping.items()}


def _substitute(value: Any, replacements: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        for placeholder, text in replacements.items():
            value = value.replace(placeholder, text)
        return value
    if isinstance(value, Mapping):
        return {_substitute(key, replacements): _substitute(item, replacements) for key, item in value.items()}
    if isinstance(value, list):
        return [_substitute(item, replacements) for item in value]
    return value


def _gdk_identity(recipe_path: Path) -> tuple[str, str]:
    """Name and version for placeholders, from ``gdk-config.json`` beside the recipe."""
    gdk_config = recipe_path.parent / "gdk-config.json"
    if not gdk_config.is_file():
        raise ConfigurationError(
            f"{recipe_path} uses {NAME_PLACEHOLDER}/{VERSION_PLACEHOLDER} but {gdk_config} does not exist; "
            "put the real name and version in the recipe or add gdk-config.json")
    document = load_document(gdk_config)
    components = document.get("component") if isinstance(document, Mapping) else None
    if not isinstance(components, Mapping) or len(components) != 1:
        raise ConfigurationError(f"{gdk_config}: expected exactly one entry under 'component'")
    ((name, settings),) = components.items()
    version = str(settings.get("version", "")) if isinstance(settings, Mapping) else ""
    if not version or version == "NEXT_PATCH":
        version = "0.0.0-local"
    return str(name), version
