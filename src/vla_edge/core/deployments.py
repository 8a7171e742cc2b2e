"""Configuration deployments: what ``greengrass-cli deployment create --update-config`` does to a core.

A fleet changes a component's configuration with a deployment, never by writing
files on the device; a developer's ``vla-edge up`` should take the change the same
way, so whatever a component does about it (validate, defer, react to the update
events) is exercised before a device sees it. The request has greengrass-cli's
``--update-config`` shape, per component::

    {"com.vlaedge.ModelUpdater": {"RESET": ["/modelPath"], "MERGE": {"modelPath": "/m/v2"}}}

What :meth:`ConfigurationDeployer.deploy` does with it:

1. Per component, the new configuration: the current one, each ``RESET`` JSON pointer
   (RFC 6901) set back to the recipe's default there, or removed where the default
   has none (``""`` resets everything), then ``MERGE`` deep-merged (objects key by
   key; lists and other values replace), as the nucleus does.
2. Every component whose configuration changes and that subscribed to
   validate-configuration updates gets the whole new configuration and answers
   ACCEPTED or REJECTED. One rejection fails the deployment with its message and
   nothing is applied. A validator that does not answer within the validation timeout
   (the deployment's configurationValidationPolicy, default 30 s) lets the deployment
   proceed, as documented for the nucleus.
3. The component-update step (:mod:`vla_edge.core.updates`): pre-update events until
   nobody defers, within the componentUpdatePolicy timeout.
4. The new configurations replace the old ones (configuration-update subscribers get
   their events; ``accessControl`` takes effect), then the post-update event.

One ordering differs from the nucleus, which validates inside its update action,
after the component-update step: here a rejected configuration fails before any
component is asked to pause, so a bad deployment never interrupts the robot. And
since validation happened before the wait, a configuration that changed during the
wait (UpdateConfiguration over IPC) fails the deployment instead of being
overwritten with one nobody validated.

Request errors (unknown component, a malformed pointer, a pointer into a list,
which the nucleus cannot reset element-wise either) are :class:`ConfigurationError`
before anything happens.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from vla_edge.bus.semantics import deep_merge
from vla_edge.core.acl import AccessControl, Policy, parse_access_control
from vla_edge.core.configstore import KeyPath
from vla_edge.core.operations import CoreServices
from vla_edge.core.updates import DEFAULT_RECHECK_MIN_S, DEFAULT_TIMEOUT_S, ComponentUpdates, UpdateOutcome
from vla_edge.errors import ConfigurationError, CoreError

log = logging.getLogger(__name__)

DEFAULT_VALIDATION_TIMEOUT_S = 30.0
"""The nucleus's default ``configurationValidationPolicy.timeoutInSeconds``."""
UPDATE_KEYS = ("RESET", "MERGE")
ValidationStatus = Literal["ACCEPTED", "REJECTED", "NO_VALIDATOR", "NO_ANSWER", "UNCHANGED"]


@dataclass(frozen=True)
class ConfigurationUpdate:
    """One component's part of ``--update-config``."""

    reset: tuple[str, ...] = ()
    merge: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ComponentResult:
    """What a deployment did to one component."""

    component: str
    validation: ValidationStatus
    """The component's answer; NO_VALIDATOR: not subscribed; NO_ANSWER: silent past the
    validation timeout; UNCHANGED: the configuration stays as it was, so nobody was asked."""
    message: str | None
    """The validator's message (a rejection's reason)."""
    changed: tuple[str, ...]
    """JSON pointers of the leaves that were (FAILED: would have been) added, changed or removed."""
    configuration: dict[str, Any]
    """The configuration the component has now."""


@dataclass(frozen=True)
class DeploymentResult:
    deployment_id: str
    status: Literal["SUCCEEDED", "FAILED"]
    error: str | None
    components: tuple[ComponentResult, ...]
    update: UpdateOutcome | None
    """The component-update step; None when the deployment failed before it."""

    def to_dict(self) -> dict[str, Any]:
        return {"deploymentId": self.deployment_id, "status": self.status, "error": self.error,
                "components": {c.component: {"validation": c.validation, "message": c.message,
                                             "changed": list(c.changed), "configuration": c.configuration}
                               for c in self.components},
                "update": None if self.update is None else self.update.to_dict()}

    @classmethod
    def from_dict(cls, document: Mapping[str, Any]) -> DeploymentResult:
        components = tuple(ComponentResult(name, entry["validation"], entry.get("message"),
                                           tuple(entry.get("changed", ())), dict(entry.get("configuration", {})))
                           for name, entry in document.get("components", {}).items())
        update = document.get("update")
        return cls(str(document["deploymentId"]), document["status"], document.get("error"), components,
                   None if update is None else UpdateOutcome.from_dict(update))


# -- the request ------------------------------------------------------------------------------------------


def load_update_config(text: str) -> Any:
    """``--update-config``'s value: a JSON string, ``@FILE``, or (as greengrass-cli takes it) a file path."""
    stripped = text.strip()
    path = stripped[1:] if stripped.startswith("@") else None
    if path is None and not stripped.startswith("{") and Path(stripped).is_file():
        path = stripped
    if path is not None:
        try:
            stripped = Path(path).expanduser().read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigurationError(f"cannot read --update-config file {path}: {exc.strerror or exc}") from exc
    try:
        return json.loads(stripped)
    except ValueError as exc:
        raise ConfigurationError(f"--update-config is not valid JSON ({exc}); give a JSON object such as "
                                 '\'{"com.example.Component": {"MERGE": {"key": 1}}}\' or @FILE') from exc


def parse_update_config(document: Any) -> dict[str, ConfigurationUpdate]:
    """Check greengrass-cli's ``{component: {"RESET": [pointer...], "MERGE": {...}}}`` shape."""
    if not isinstance(document, Mapping) or not document:
        raise ConfigurationError('the update must be a non-empty object: {"<component>": {"RESET": [...], '
                                 '"MERGE": {...}}}')
    updates: dict[str, ConfigurationUpdate] = {}
    for component, entry in document.items():
        if not isinstance(entry, Mapping):
            raise ConfigurationError(f"{component}: expected an object with RESET and/or MERGE, got {entry!r:.100}")
        unknown = sorted(set(entry) - set(UPDATE_KEYS))
        if unknown:
            raise ConfigurationError(f"{component}: unknown key(s) {unknown}; the update of a component has "
                                     "RESET (a list of JSON pointers) and MERGE (an object), upper case")
        reset = entry.get("RESET", [])
        if not isinstance(reset, list) or not all(isinstance(p, str) for p in reset):
            raise ConfigurationError(f"{component}: RESET must be a list of JSON pointers, got {reset!r:.100}")
        for pointer in reset:
            parse_pointer(pointer, component)
        merge = entry.get("MERGE", {})
        if not isinstance(merge, Mapping):
            raise ConfigurationError(f"{component}: MERGE must be an object, got {merge!r:.100}")
        updates[str(component)] = ConfigurationUpdate(tuple(reset), copy.deepcopy(dict(merge)))
    return updates


def parse_pointer(pointer: str, component: str = "") -> KeyPath:
    """An RFC 6901 JSON pointer as a key path (``""`` is the whole configuration)."""
    where = f"{component}: " if component else ""
    if pointer == "":
        return ()
    if not pointer.startswith("/"):
        raise ConfigurationError(f"{where}RESET pointer {pointer!r} must start with '/' (e.g. /mqtt/port), "
                                 "or be \"\" for the whole configuration")
    keys = []
    for token in pointer[1:].split("/"):
        if "~" in token.replace("~0", "").replace("~1", ""):
            raise ConfigurationError(f"{where}RESET pointer {pointer!r}: '~' must be written ~0 ('/' is ~1)")
        keys.append(token.replace("~1", "/").replace("~0", "~"))
    return tuple(keys)


def pointer(key_path: KeyPath) -> str:
    return "".join("/" + key.replace("~", "~0").replace("/", "~1") for key in key_path)


def apply_update(current: Mapping[str, Any], defaults: Mapping[str, Any], update: ConfigurationUpdate,
                 component: str = "") -> dict[str, Any]:
    """The configuration after ``update``: resets first (to ``defaults``), then the merge."""
    result = copy.deepcopy(dict(current))
    for text in update.reset:
        path = parse_pointer(text, component)
        if not path:
            result = copy.deepcopy(dict(defaults))
            continue
        parent = _container(result, path, text, component)
        default_parent = _container(defaults, path, text, component, strict=False)
        if default_parent is not None and path[-1] in default_parent:
            if parent is None:  # the default has it but the current configuration lost the way there
                parent = _make_parents(result, path)
            parent[path[-1]] = copy.deepcopy(default_parent[path[-1]])
        elif parent is not None:
            parent.pop(path[-1], None)
    return deep_merge(result, update.merge)


def _container(tree: Mapping[str, Any], path: KeyPath, text: str, component: str, strict: bool = True
               ) -> Any:
    """The mapping holding ``path[-1]``; None where a key on the way is missing.

    ``strict`` (the current configuration): a list or a value on the way is an error, since the
    pointer then names nothing that could be reset. Not strict (the defaults): it means no default.
    """
    node: Any = tree
    for depth, key in enumerate(path[:-1]):
        if not isinstance(node, Mapping) or key not in node:
            return None
        node = node[key]
        if strict and not isinstance(node, Mapping):
            kind = "a list (lists reset only as a whole)" if isinstance(node, list) else f"a value ({node!r:.40})"
            raise ConfigurationError(f"{component + ': ' if component else ''}RESET pointer {text!r} goes into "
                                     f"{pointer(path[:depth + 1])}, which is {kind}")
    return node if isinstance(node, dict) else None


def _make_parents(tree: dict[str, Any], path: KeyPath) -> dict[str, Any]:
    node = tree
    for key in path[:-1]:
        node = node.setdefault(key, {})
    return node


def changed_pointers(before: Mapping[str, Any], after: Mapping[str, Any]) -> tuple[str, ...]:
    """JSON pointers of the leaves added, changed or removed; an empty object counts as a leaf here,
    so that a change which only adds or drops one is still a change."""
    old, new = _flat(before), _flat(after)
    paths = {p for p in new if p not in old or old[p] != new[p]} | {p for p in old if p not in new}
    filled = {p[:depth] for p in paths for depth in range(1, len(p))}  # {} that gained keys: those tell it
    return tuple(sorted(pointer(p) for p in paths - filled))


def _flat(value: Mapping[str, Any], prefix: KeyPath = ()) -> dict[KeyPath, Any]:
    out: dict[KeyPath, Any] = {}
    for key, item in value.items():
        path = prefix + (str(key),)
        out.update(_flat(item, path) if isinstance(item, Mapping) and item else {path: item})
    return out


# -- running it on the core's event loop ------------------------------------------------------------------


class ConfigurationDeployer:
    """Plays configuration deployments on a core (see the module docstring); runs on the core's event loop."""

    def __init__(self, services: CoreServices, updates: ComponentUpdates, acl: AccessControl,
                 defaults: Mapping[str, Mapping[str, Any]], built_in: tuple[str, ...] = ()) -> None:
        self.services = services
        self.updates = updates
        self.acl = acl
        self.defaults = {name: copy.deepcopy(dict(tree)) for name, tree in defaults.items()}
        self.built_in = built_in
        self._running: str | None = None

    async def deploy(self, update_config: Mapping[str, ConfigurationUpdate], deployment_id: str, *,
                     timeout_s: float = DEFAULT_TIMEOUT_S, recheck_min_s: float = DEFAULT_RECHECK_MIN_S,
                     max_wait_s: float | None = None,
                     validation_timeout_s: float = DEFAULT_VALIDATION_TIMEOUT_S, notify: bool = True
                     ) -> DeploymentResult:
        """``notify`` False is the SKIP_NOTIFY_COMPONENTS update policy: no pre/post-update events,
        so no component can defer (a model rollout that the model-updater switches without stopping)."""
        if validation_timeout_s <= 0 or timeout_s <= 0:
            raise CoreError("the validation timeout and the component-update timeout must be positive")
        if recheck_min_s < 0 or (max_wait_s is not None and max_wait_s < 0):
            raise CoreError("recheck_min_s and max_wait_s must not be negative")
        if self._running is not None or self.updates.active is not None:
            raise CoreError(f"deployment {self._running or self.updates.active} is still running; one at a time")
        bases, proposals, policies = self._resolve(update_config)
        self._running = deployment_id
        try:
            return await self._deploy(deployment_id, bases, proposals, policies, timeout_s, recheck_min_s,
                                      max_wait_s, validation_timeout_s, notify)
        finally:
            self._running = None

    def _resolve(self, update_config: Mapping[str, ConfigurationUpdate]
                 ) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]], dict[str, list[Policy]]]:
        store = self.services.store
        bases, proposals, policies = {}, {}, {}
        for component, update in update_config.items():
            if component in self.built_in:
                raise ConfigurationError(f"{component} is built into the core and has no configuration to deploy")
            if component not in self.defaults or not store.has(component):
                known = ", ".join(sorted(self.defaults)) or "none"
                raise ConfigurationError(f"unknown component {component!r}; this core runs: {known}")
            bases[component] = store.snapshot(component)
            proposal = apply_update(bases[component], self.defaults[component], update, component)
            proposals[component] = json.loads(json.dumps(proposal))  # JSON-clean, as it would travel
            policies[component] = parse_access_control(component, proposals[component])
        return bases, proposals, policies

    async def _deploy(self, deployment_id: str, bases: dict[str, dict[str, Any]],
                      proposals: dict[str, dict[str, Any]], policies: dict[str, list[Policy]], timeout_s: float,
                      recheck_min_s: float, max_wait_s: float | None, validation_timeout_s: float,
                      notify: bool = True) -> DeploymentResult:
        changes = {name: changed_pointers(bases[name], proposals[name]) for name in proposals}
        to_ask = [name for name in proposals if changes[name]]
        answers = await asyncio.gather(*(self._validate(name, proposals[name], deployment_id, validation_timeout_s)
                                         for name in to_ask))
        verdicts: dict[str, tuple[ValidationStatus, str | None]] = dict.fromkeys(proposals, ("UNCHANGED", None))
        verdicts.update(zip(to_ask, answers, strict=True))

        def result(status: Literal["SUCCEEDED", "FAILED"], error: str | None,
                   update: UpdateOutcome | None) -> DeploymentResult:
            return DeploymentResult(deployment_id, status, error, tuple(
                ComponentResult(name, verdicts[name][0], verdicts[name][1], changes[name],
                                self.services.store.snapshot(name)) for name in proposals), update)

        rejected = [f"{name} rejected the configuration: {message or '(no reason given)'}"
                    for name, (status, message) in verdicts.items() if status == "REJECTED"]
        if rejected:
            log.warning("deployment %s failed validation; nothing applied: %s", deployment_id, "; ".join(rejected))
            return result("FAILED", "; ".join(rejected), None)
        outcome = (await self.updates.negotiate(deployment_id, timeout_s=timeout_s, recheck_min_s=recheck_min_s,
                                                max_wait_s=max_wait_s) if notify else None)
        try:
            moved = [name for name in proposals if self.services.store.snapshot(name) != bases[name]]
            if moved:
                error = (f"the configuration of {', '.join(moved)} changed while the deployment waited (an "
                         "UpdateConfiguration over IPC?); nothing applied: deploy again")
                log.warning("deployment %s: %s", deployment_id, error)
                return result("FAILED", error, outcome)
            for name, proposal in proposals.items():
                if changes[name]:
                    self.services.store.replace(name, proposal)
                    self.acl.set_policies(name, policies[name])
            log.info("deployment %s applied: %s", deployment_id,
                     "; ".join(f"{name} {len(changes[name])} key(s)" for name in proposals))
            return result("SUCCEEDED", None, outcome)
        finally:
            self.updates.finish(deployment_id)

    async def _validate(self, component: str, proposal: dict[str, Any], deployment_id: str, timeout_s: float
                        ) -> tuple[ValidationStatus, str | None]:
        try:
            report = await self.services.request_validation(component, proposal, timeout_s, deployment_id)
        except TimeoutError:
            log.warning("deployment %s: %s did not validate the configuration within %g s; proceeding, as the "
                        "nucleus does", deployment_id, component, timeout_s)
            return "NO_ANSWER", None
        if report is None:
            return "NO_VALIDATOR", None
        return ("ACCEPTED" if report.status == "ACCEPTED" else "REJECTED"), report.message


# -- for people -------------------------------------------------------------------------------------------


def describe(result: DeploymentResult) -> list[str]:
    """Readable lines: the verdict, each component's answer and change, the update step, the configurations."""
    lines = [f"deployment {result.deployment_id}: {result.status}" + (f": {result.error}" if result.error else "")]
    for entry in result.components:
        answer = {"ACCEPTED": "accepted by the component", "REJECTED": "REJECTED by the component",
                  "NO_VALIDATOR": "not validated (no validator subscribed)",
                  "NO_ANSWER": "no answer from its validator in time (deployed anyway)",
                  "UNCHANGED": "unchanged, not asked"}[entry.validation]
        answer += f" ({entry.message})" if entry.message else ""
        lines.append(f"  {entry.component}: {answer}; {_changes(entry.changed)}")
    if result.update is None:
        lines.append("  no component-update step: " + ("components were not notified (skip notify)"
                                                        if result.status == "SUCCEEDED" else "nothing was applied"))
    else:
        lines.extend(describe_outcome(result.update, indent="  "))
    if result.status == "SUCCEEDED":
        for entry in result.components:
            shown = {k: v for k, v in entry.configuration.items() if k != "accessControl"}
            label = "configuration now" if len(shown) == len(entry.configuration) else \
                "configuration now (accessControl left out; --json shows it)"
            lines.append(f"  {entry.component} {label}: {json.dumps(shown, sort_keys=True)}")
    return lines


def _changes(pointers: tuple[str, ...], listed: int = 6) -> str:
    """The changed keys, each when they are few, else counted under their top-level key (a calibration is 30)."""
    if not pointers:
        return "no change"
    if len(pointers) <= listed:
        return f"{len(pointers)} key(s) changed: {', '.join(pointers)}"
    tops: dict[str, int] = {}
    for text in pointers:
        top = "/" + text.split("/")[1]
        tops[top] = tops.get(top, 0) + 1
    return f"{len(pointers)} key(s) changed: " + ", ".join(
        top if count == 1 else f"{top}/... ({count})" for top, count in tops.items())


def describe_outcome(outcome: UpdateOutcome, indent: str = "") -> list[str]:
    """The component-update step in lines: when it went ahead, who was asked, who deferred and why."""
    lines = [(f"{indent}update step: went ahead after {outcome.waited_s:.1f} s "
              f"({outcome.reason.replace('_', ' ')}; {outcome.rounds} pre-update event(s))"),
             f"{indent}  notified: {', '.join(outcome.notified) or 'nobody subscribed to component updates'}"]
    for response in outcome.deferrals:
        lines.append(f"{indent}  deferred by {response.component} for {response.recheck_after_ms} ms at "
                     f"{response.at_s:.1f} s: {response.message or '(no message)'}")
    if outcome.unanswered:
        lines.append(f"{indent}  no answer from: {', '.join(outcome.unanswered)}")
    return lines
