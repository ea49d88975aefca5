"""KEDA ScaledObject and HPA drivers: they, not the operator, then write spec.replicas.

Both target the VisionModel's scale subresource, so there is exactly one writer of replicas,
and both size on in-flight requests against the plan's batch, as the operator's policy does.
"""

from __future__ import annotations

import math
from typing import Any

from vlm_operator.api.v1alpha1 import ScalingSpec
from vlm_operator.autoscale.policy import BATCH_TARGET_FRACTION
from vlm_operator.autoscale.signals import RUNNING, WAITING, Fleet
from vlm_operator.render.workload import RenderInput, child_metadata

KEDA_CRD = "scaledobjects.keda.sh"
HPA_METRIC = "vllm_requests_in_flight"
"""The external metric a prometheus-adapter rule must expose (see docs/autoscaling.md)."""
HPA_SELECTOR_LABEL = "vlm_operator_io_visionmodel"
"""The Prometheus label the PodMonitor makes of the pod label vlm-operator.io/visionmodel."""


def _target(source: RenderInput) -> dict[str, str]:
    return {"apiVersion": "vlm-operator.io/v1alpha1", "kind": "VisionModel", "name": source.name}


def _scaling(source: RenderInput) -> ScalingSpec:
    if source.spec.scaling is None:
        raise ValueError("a scaling driver needs spec.scaling")
    return source.spec.scaling


def _behavior(scaling: ScalingSpec) -> dict[str, Any]:
    """Fast up, slow down, one replica at a time: the operator policy's shape in HPA terms."""
    return {
        "scaleUp": {
            "stabilizationWindowSeconds": scaling.scale_up_delay_seconds,
            "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}],
        },
        "scaleDown": {
            "stabilizationWindowSeconds": scaling.scale_down_delay_seconds,
            "policies": [
                {
                    "type": "Pods",
                    "value": 1,
                    "periodSeconds": max(15, scaling.scale_down_delay_seconds // 4),
                }
            ],
        },
    }


def replicas_query(source: RenderInput) -> str:
    """PromQL for demand plus warm replicas: what KEDA scales to with a threshold of 1."""
    scaling = _scaling(source)
    selector = Fleet(source.namespace, source.name).selector()
    per_replica = max(1, math.floor(source.plan.max_num_seqs * BATCH_TARGET_FRACTION))
    in_flight = (
        f"(sum({RUNNING}{{{selector}}}) or vector(0)) + (sum({WAITING}{{{selector}}}) or vector(0))"
    )
    return f"ceil(({in_flight}) / {per_replica}) + {scaling.warm_replicas}"


def render_scaled_object(source: RenderInput) -> dict[str, Any]:
    """A KEDA ScaledObject on the VisionModel's scale subresource."""
    scaling = _scaling(source)
    prometheus = scaling.metrics_source.prometheus
    if prometheus is None:
        raise ValueError("the keda driver needs spec.scaling.metricsSource.prometheus")
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": child_metadata(source),
        "spec": {
            "scaleTargetRef": _target(source),
            "minReplicaCount": scaling.min_replicas,
            "maxReplicaCount": scaling.max_replicas,
            "pollingInterval": 15,
            "cooldownPeriod": scaling.scale_to_zero_after_seconds,
            "advanced": {"horizontalPodAutoscalerConfig": {"behavior": _behavior(scaling)}},
            "triggers": [
                {
                    "type": "prometheus",
                    "metadata": {
                        "serverAddress": prometheus.url,
                        "query": replicas_query(source),
                        "threshold": "1",
                    },
                }
            ],
        },
    }


def render_horizontal_pod_autoscaler(source: RenderInput) -> dict[str, Any]:
    """An autoscaling/v2 HPA on an external in-flight metric served by prometheus-adapter.

    An HPA cannot add a constant to its demand, so warm replicas become part of the floor."""
    scaling = _scaling(source)
    per_replica = max(1, math.floor(source.plan.max_num_seqs * BATCH_TARGET_FRACTION))
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": child_metadata(source),
        "spec": {
            "scaleTargetRef": _target(source),
            "minReplicas": min(
                scaling.max_replicas, max(1, scaling.min_replicas) + scaling.warm_replicas
            ),
            "maxReplicas": scaling.max_replicas,
            "metrics": [
                {
                    "type": "External",
                    "external": {
                        "metric": {
                            "name": HPA_METRIC,
                            "selector": {"matchLabels": {HPA_SELECTOR_LABEL: source.name}},
                        },
                        "target": {"type": "AverageValue", "averageValue": str(per_replica)},
                    },
                }
            ],
            "behavior": _behavior(scaling),
        },
    }
