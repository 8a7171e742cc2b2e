"""Component configurations as the nucleus keeps them: a tree per component, leaf timestamps, watchers.

Semantics taken from the nucleus's ConfigStoreIPCEventStreamAgent:

* A *leaf* is any non-mapping value (lists included). Reading a leaf over IPC
  returns ``{leafName: value}``; reading a mapping returns the mapping.
* UpdateConfiguration merges ``valueToMerge`` at ``keyPath``: mappings merge
  recursively, anything else replaces, a missing path is created, and a leaf at
  ``keyPath`` is replaced by the merged value.
* Every leaf has a modification time (ms since the epoch). An update whose
  ``timestamp`` is older than a leaf it would change fails with
  FailedUpdateConditionCheckError. The nucleus applies the newer leaves of such a
  request and rejects the rest; this store rejects the whole request, which is
  simpler to reason about and never leaves a half-applied update.
* Watchers are told of each changed leaf path (added, changed or removed), not of
  untouched leaves and not of empty containers, and only when their key path is
  an ancestor of (or equal to) the changed path, or the change replaced an
  ancestor of the watched path.

Thread-safe: a lock guards the trees; watcher callbacks run after it is released.
"""

from __future__ import annotations

import copy
import itertools
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from vla_edge.bus.semantics import deep_merge

KeyPath = tuple[str, ...]
Watcher = Callable[[str, KeyPath], None]
"""Called with (component name, changed key path)."""


class StaleUpdateError(Exception):
    """The update's timestamp is older than a value it would change."""


def now_ms() -> int:
    return int(time.time() * 1000)


def leaves(value: Any, prefix: KeyPath = ()) -> dict[KeyPath, Any]:
    """Flatten a tree to {leaf path: value}; a non-mapping ``value`` is itself one leaf at ``prefix``."""
    if not isinstance(value, Mapping):
        return {prefix: value}
    out: dict[KeyPath, Any] = {}
    for key, item in value.items():
        out.update(leaves(item, prefix + (str(key),)))
    return out


class ConfigStore:
    """All components' configuration trees."""

    def __init__(self, configurations: Mapping[str, Mapping[str, Any]], created_ms: int | None = None) -> None:
        created = now_ms() if created_ms is None else created_ms
        self._lock = threading.Lock()
        self._trees: dict[str, dict[str, Any]] = {
            name: copy.deepcopy(dict(tree)) for name, tree in configurations.items()}
        self._modtimes: dict[str, dict[KeyPath, int]] = {
            name: {path: created for path in leaves(tree)} for name, tree in self._trees.items()}
        self._watchers: dict[int, tuple[str, KeyPath, Watcher]] = {}
        self._ids = itertools.count()

    def components(self) -> list[str]:
        with self._lock:
            return sorted(self._trees)

    def has(self, component: str) -> bool:
        with self._lock:
            return component in self._trees

    def snapshot(self, component: str) -> dict[str, Any]:
        """A deep copy of one component's whole configuration (KeyError if unknown)."""
        with self._lock:
            return copy.deepcopy(self._trees[component])

    def get(self, component: str, key_path: Sequence[str] = ()) -> Any:
        """A deep copy of the node at ``key_path``; KeyError when the component or a key is missing."""
        with self._lock:
            node: Any = self._trees[component]
            for key in key_path:
                if not isinstance(node, dict) or key not in node:
                    raise KeyError(tuple(key_path))
                node = node[key]
            return copy.deepcopy(node)

    def merge(self, component: str, key_path: Sequence[str], value: Mapping[str, Any], timestamp_ms: int
              ) -> list[KeyPath]:
        """Merge ``value`` at ``key_path`` (see module docstring); returns and announces the changed leaf paths."""
        path = tuple(key_path)
        with self._lock:
            tree = self._trees[component]
            old_subtree = _lookup(tree, path)
            if isinstance(old_subtree, dict):
                new_subtree: Any = deep_merge(old_subtree, value)
            else:
                new_subtree = copy.deepcopy(dict(value))
            changed = self._apply(component, path, old_subtree, new_subtree, timestamp_ms)
        self._announce(component, changed)
        return changed

    def replace(self, component: str, configuration: Mapping[str, Any], timestamp_ms: int | None = None
                ) -> list[KeyPath]:
        """Replace a whole configuration (what an applied deployment does); returns the changed leaf paths."""
        stamp = now_ms() if timestamp_ms is None else timestamp_ms
        with self._lock:
            old = self._trees.get(component, {})
            self._trees.setdefault(component, {})
            self._modtimes.setdefault(component, {})
            changed = self._apply(component, (), old, copy.deepcopy(dict(configuration)), stamp, force=True)
        self._announce(component, changed)
        return changed

    def watch(self, component: str, key_path: Sequence[str], callback: Watcher) -> Callable[[], None]:
        """Call ``callback`` for changes at or under ``key_path``; returns the function that stops it."""
        watcher_id = next(self._ids)
        with self._lock:
            self._watchers[watcher_id] = (component, tuple(key_path), callback)

        def unwatch() -> None:
            with self._lock:
                self._watchers.pop(watcher_id, None)

        return unwatch

    # -- internals (lock held) ------------------------------------------------------------------------

    def _apply(self, component: str, path: KeyPath, old_subtree: Any, new_subtree: Any, stamp: int,
               force: bool = False) -> list[KeyPath]:
        before = leaves(old_subtree, path) if old_subtree is not _MISSING else {}
        after = leaves(new_subtree, path)
        changed = [p for p, v in after.items() if p not in before or before[p] != v]
        changed += [p for p in before if p not in after]
        # A leaf on the way down (a prefix of path) is replaced by a container: that is a change too.
        tree = self._trees[component]
        blocking = [p for p in self._modtimes[component] if p and p == path[: len(p)] and len(p) < len(path)]
        changed += [p for p in blocking if p not in changed]
        if not force:
            times = self._modtimes[component]
            if any(times.get(p, 0) > stamp for p in changed):
                raise StaleUpdateError(path)
        if not changed and not force:
            return []
        if path:  # (force: a replace that only adds or drops empty objects still changes the tree)
            parent = tree
            for key in path[:-1]:
                if not isinstance(parent.get(key), dict):
                    parent[key] = {}
                parent = parent[key]
            parent[path[-1]] = new_subtree
        else:
            self._trees[component] = dict(new_subtree)
        times = self._modtimes[component]
        for p in changed:
            if p in after:
                times[p] = stamp
            else:
                times.pop(p, None)
        return changed

    def _announce(self, component: str, changed: list[KeyPath]) -> None:
        if not changed:
            return
        with self._lock:
            watchers = [w for w in self._watchers.values() if w[0] == component]
        for _name, watched, callback in watchers:
            for path in changed:
                if path[: len(watched)] == watched or watched[: len(path)] == path:
                    callback(component, path)


_MISSING = object()


def _lookup(tree: dict[str, Any], path: KeyPath) -> Any:
    node: Any = tree
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return _MISSING
        node = node[key]
    return node
