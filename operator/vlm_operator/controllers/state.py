"""What the control loops remember between passes, per VisionModel, for one operator run."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from vlm_operator.autoscale.policy import History
from vlm_operator.autoscale.sources.pods import CounterReadings
from vlm_operator.controllers import metrics

Key = tuple[str, str]
"""(namespace, name) of a VisionModel."""

ChildKey = tuple[str, str]
"""(kind, name) of one child of a VisionModel."""

UNKNOWN = "?"
"""The scaling driver before this run reconciled the VisionModel once."""


@dataclass
class VisionModelMemory:
    """One VisionModel's lock and autoscaling history."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    """Held by the reconcile and by the autoscaler: the two never interleave on one object."""
    history: History | None = None
    """The autoscaler's recent recommendations; None until its first pass."""
    applied: dict[ChildKey, str] = field(default_factory=dict)
    """Intent digest this run applied last, per child of a kind the operator does not watch."""
    fingerprints: dict[ChildKey, str] = field(default_factory=dict)
    """Per watched child: its fingerprint as the operator last applied or verified it; a
    different one means someone else changed the spec."""
    driver: str = UNKNOWN
    """The scaling driver whose objects the last successful reconcile left in place."""
    counter_readings: CounterReadings = field(default_factory=dict)
    """The pods' finished-request counters of the last minute, for their rate (pods source)."""


class Memory:
    """Per-VisionModel memory of one operator run; forget() drops an object's entry."""

    def __init__(self) -> None:
        self._entries: dict[Key, VisionModelMemory] = {}
        self._guard = threading.Lock()

    def of(self, namespace: str, name: str) -> VisionModelMemory:
        """The entry of one VisionModel, created on first use."""
        with self._guard:
            return self._entries.setdefault((namespace, name), VisionModelMemory())

    def forget(self, namespace: str, name: str) -> None:
        """Drop a deleted VisionModel's entry and its gauges."""
        with self._guard:
            self._entries.pop((namespace, name), None)
            metrics.forget_visionmodel(namespace, name)

    def publish(
        self, namespace: str, name: str, entry: VisionModelMemory, quick: Callable[[], None]
    ) -> None:
        """Run quick (a gauge update) only if entry is still the object's memory: a pass that
        began before the delete event cannot publish the gauges again after forget()."""
        with self._guard:
            if self._entries.get((namespace, name)) is entry:
                quick()

    def keys(self) -> set[Key]:
        """The VisionModels remembered now."""
        with self._guard:
            return set(self._entries)
