"""The loops' memory: a pass that began before a VisionModel's delete event cannot publish its
gauges again after the operator forgot it."""

from __future__ import annotations

from prometheus_client import REGISTRY

from vlm_operator.controllers import metrics
from vlm_operator.controllers.state import Memory


def ready_replicas(name: str) -> float | None:
    labels = {"namespace": "team-b", "visionmodel": name}
    result: float | None = REGISTRY.get_sample_value("vlm_operator_ready_replicas", labels)
    return result


def test_a_pass_started_before_the_delete_publishes_nothing_after_it() -> None:
    memory = Memory()
    entry = memory.of("team-b", "gone")
    memory.publish(
        "team-b", "gone", entry, lambda: metrics.READY_REPLICAS.labels("team-b", "gone").set(2)
    )
    assert ready_replicas("gone") == 2

    memory.forget("team-b", "gone")
    assert ready_replicas("gone") is None
    remembered = memory.keys()
    assert ("team-b", "gone") not in remembered

    # The pass that held the old entry finishes now: its gauge must stay dropped.
    memory.publish(
        "team-b", "gone", entry, lambda: metrics.READY_REPLICAS.labels("team-b", "gone").set(3)
    )
    assert ready_replicas("gone") is None


def test_a_pass_on_a_recreated_visionmodel_publishes() -> None:
    memory = Memory()
    memory.of("team-b", "again")
    memory.forget("team-b", "again")
    recreated = memory.of("team-b", "again")
    memory.publish(
        "team-b",
        "again",
        recreated,
        lambda: metrics.READY_REPLICAS.labels("team-b", "again").set(1),
    )
    assert ready_replicas("again") == 1
    memory.forget("team-b", "again")
