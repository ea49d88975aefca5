"""The latest body of every watched object, fed by the watch streams (and seeded by one list per
kind at start-up), so a reconcile reads nodes and children without a request."""

from __future__ import annotations

import copy
import threading
from collections.abc import Mapping, Sequence
from typing import Any

CacheKey = tuple[str, str, str]
"""(kind, namespace, name); namespace is "" for cluster-scoped kinds."""


def _revision(body: Mapping[str, Any]) -> int | None:
    text = str(body.get("metadata", {}).get("resourceVersion", ""))
    return int(text) if text.isdigit() else None


class WatchCache:
    """Thread-safe store of the newest body seen per object; reads return deep copies."""

    def __init__(self) -> None:
        self._objects: dict[CacheKey, dict[str, Any]] = {}
        self._synced: set[str] = set()
        self._snapshots: dict[str, tuple[dict[str, Any], ...]] = {}
        self._guard = threading.Lock()

    @staticmethod
    def key(kind: str, body: Mapping[str, Any]) -> CacheKey:
        """The cache key of one body."""
        metadata = body.get("metadata", {})
        return kind, str(metadata.get("namespace") or ""), str(metadata["name"])

    def put(self, kind: str, body: Mapping[str, Any]) -> None:
        """Store a body unless the cache already holds a newer version of the same object (a
        write's response can arrive before the watch event of an older version). The cache
        takes the body over, uncopied (watch events and responses are fresh objects); reads
        hand out copies."""
        key = self.key(kind, body)
        with self._guard:
            held = self._objects.get(key)
            incoming, current = _revision(body), _revision(held) if held else None
            if incoming is not None and current is not None and incoming < current:
                return
            self._objects[key] = dict(body)
            self._snapshots.pop(kind, None)

    def remove(self, kind: str, namespace: str, name: str) -> None:
        """Forget a deleted object."""
        with self._guard:
            self._objects.pop((kind, namespace, name), None)
            self._snapshots.pop(kind, None)

    def replace_all(self, kind: str, bodies: Sequence[Mapping[str, Any]]) -> None:
        """Seed one kind from a full list and mark it synced: from now on its reads are served
        from here."""
        with self._guard:
            for key in [key for key in self._objects if key[0] == kind]:
                del self._objects[key]
            for body in bodies:
                self._objects[self.key(kind, body)] = copy.deepcopy(dict(body))
            self._synced.add(kind)
            self._snapshots.pop(kind, None)

    def synced(self, kind: str) -> bool:
        """Whether reads of this kind may be served from the cache."""
        with self._guard:
            return kind in self._synced

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """A copy of one object's newest body, or None."""
        with self._guard:
            found = self._objects.get((kind, namespace, name))
            return copy.deepcopy(found) if found is not None else None

    def bodies(self, kind: str) -> list[dict[str, Any]]:
        """Copies of every object of a kind."""
        with self._guard:
            return [copy.deepcopy(body) for key, body in self._objects.items() if key[0] == kind]

    def snapshot(self, kind: str) -> tuple[dict[str, Any], ...]:
        """Every object of a kind, shared and not copied: callers must not modify them. Built
        once per change of the kind (the planner reads every node on every reconcile)."""
        with self._guard:
            found = self._snapshots.get(kind)
            if found is None:
                found = tuple(body for key, body in self._objects.items() if key[0] == kind)
                self._snapshots[kind] = found
            return found

    def names(self, kind: str) -> list[tuple[str, str]]:
        """(namespace, name) of every object of a kind."""
        with self._guard:
            return [(key[1], key[2]) for key in self._objects if key[0] == kind]
