"""The operator's own Prometheus metrics, served on /metrics."""

from __future__ import annotations

import threading

from prometheus_client import Counter, Gauge, Histogram

from vlm_operator.sizing import Plan

VISIONMODEL = ["namespace", "visionmodel"]

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
    VISIONMODEL,
)
DESIRED_REPLICAS = Gauge(
    "vlm_operator_desired_replicas", "spec.replicas of a VisionModel.", VISIONMODEL
)
READY_REPLICAS = Gauge(
    "vlm_operator_ready_replicas", "Ready vLLM replicas of a VisionModel.", VISIONMODEL
)
WARM_REPLICAS = Gauge(
    "vlm_operator_warm_replicas", "spec.scaling.warmReplicas of a VisionModel.", VISIONMODEL
)
MAX_REPLICAS = Gauge(
    "vlm_operator_max_replicas", "spec.scaling.maxReplicas of a VisionModel.", VISIONMODEL
)
PLAN_INFO = Gauge(
    "vlm_operator_plan_info",
    "1 for the current feasible plan of a VisionModel, labelled with its choices.",
    [*VISIONMODEL, "gpu_product", "precision", "tensor_parallel_size"],
)
STALLED = Gauge(
    "vlm_operator_stalled",
    "1 while a VisionModel is Stalled, with the reason.",
    [*VISIONMODEL, "reason"],
)

_PER_VISIONMODEL = (PLANNED_GPUS, DESIRED_REPLICAS, READY_REPLICAS, WARM_REPLICAS, MAX_REPLICAS)
_labelled: dict[tuple[str, str], dict[Gauge, tuple[str, ...]]] = {}
"""The extra label values each VisionModel's info-style series carry now, to remove them when
they change."""
_labelled_guard = threading.Lock()


def _set_labelled(gauge: Gauge, namespace: str, name: str, extra: tuple[str, ...] | None) -> None:
    """Keep exactly one series of `gauge` for the VisionModel (none when extra is None)."""
    with _labelled_guard:
        current = _labelled.setdefault((namespace, name), {})
        previous = current.pop(gauge, None)
        if previous is not None and previous != extra:
            gauge.remove(namespace, name, *previous)
        if extra is not None:
            gauge.labels(namespace, name, *extra).set(1)
            current[gauge] = extra


def _set_optional(gauge: Gauge, namespace: str, name: str, value: int | None) -> None:
    if value is None:
        try:
            gauge.remove(namespace, name)
        except KeyError:
            return
    else:
        gauge.labels(namespace, name).set(value)


def record_visionmodel(
    namespace: str,
    name: str,
    *,
    plan: Plan,
    desired: int,
    ready: int,
    warm: int | None,
    maximum: int | None,
    stalled_reason: str | None,
) -> None:
    """Publish the per-VisionModel series after a reconcile; warm and maximum are None without
    spec.scaling, stalled_reason None unless the VisionModel is Stalled."""
    PLANNED_GPUS.labels(namespace, name).set(plan.gpus_per_replica if plan.feasible else 0)
    DESIRED_REPLICAS.labels(namespace, name).set(desired)
    READY_REPLICAS.labels(namespace, name).set(ready)
    _set_optional(WARM_REPLICAS, namespace, name, warm)
    _set_optional(MAX_REPLICAS, namespace, name, maximum)
    choices = (plan.gpu_product, plan.precision, str(plan.tensor_parallel_size))
    _set_labelled(PLAN_INFO, namespace, name, choices if plan.feasible else None)
    _set_labelled(STALLED, namespace, name, None if stalled_reason is None else (stalled_reason,))


def forget_visionmodel(namespace: str, name: str) -> None:
    """Drop every series of a deleted VisionModel."""
    for gauge in _PER_VISIONMODEL:
        _set_optional(gauge, namespace, name, None)
    _set_labelled(PLAN_INFO, namespace, name, None)
    _set_labelled(STALLED, namespace, name, None)
    with _labelled_guard:
        _labelled.pop((namespace, name), None)
