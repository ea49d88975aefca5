"""What the control loops remember between passes, per VisionModel, for one operator run."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from vlm_operator.autoscale.policy import History
from vlm_operator.autoscale.sources.pods import CounterReadings
from vlm_operator.controllers import metrics

Key = tuple[str, str]
"""(namespace, name) of a VisionModel."""


@dataclass
class VisionModelMemory:
    """One VisionModel's lock and autoscaling history."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    """Held by the reconcile and by the autoscaler: the two never interleave on one object."""
    history: History | None = None
    """The autoscaler's recent recommendations; None until its first pass."""
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
        """Drop a deleted VisionModel's entry."""
        with self._guard:
            self._entries.pop((namespace, name), None)

    def keys(self) -> set[Key]:
        """The VisionModels remembered now."""
        with self._guard:
            return set(self._entries)


def forget_visionmodel(memory: Memory, namespace: str, name: str) -> None:
    """Drop everything the operator keeps in memory about a deleted VisionModel, gauges too."""
    memory.forget(namespace, name)
    metrics.forget_visionmodel(namespace, name)
