"""The operator's own Prometheus metrics, served on /metrics."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

RECONCILES = Counter(
    "vlm_operator_reconcile_total", "Reconciles of VisionModels, by result.", ["result"]
)
RECONCILE_ERRORS = Counter(
    "vlm_operator_reconcile_errors_total", "Reconciles that raised an error.", ["error"]
)
RECONCILE_SECONDS = Histogram(
    "vlm_operator_reconcile_duration_seconds",
    "Wall time of one reconcile.",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
PLANNED_GPUS = Gauge(
    "vlm_operator_planned_gpus_per_replica",
    "GPUs per replica in the current plan (0 when the plan does not fit).",
    ["namespace", "visionmodel"],
)
DESIRED_REPLICAS = Gauge(
    "vlm_operator_desired_replicas", "spec.replicas of a VisionModel.", ["namespace", "visionmodel"]
)
READY_REPLICAS = Gauge(
    "vlm_operator_ready_replicas",
    "Ready vLLM replicas of a VisionModel.",
    ["namespace", "visionmodel"],
)


def record_visionmodel(
    namespace: str, name: str, *, planned_gpus: int, desired: int, ready: int
) -> None:
    """Publish the per-VisionModel gauges after a reconcile."""
    PLANNED_GPUS.labels(namespace, name).set(planned_gpus)
    DESIRED_REPLICAS.labels(namespace, name).set(desired)
    READY_REPLICAS.labels(namespace, name).set(ready)


def forget_visionmodel(namespace: str, name: str) -> None:
    """Drop the gauges of a deleted VisionModel."""
    for gauge in (PLANNED_GPUS, DESIRED_REPLICAS, READY_REPLICAS):
        try:
            gauge.remove(namespace, name)
        except KeyError:
            continue
