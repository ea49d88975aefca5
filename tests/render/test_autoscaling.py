"""KEDA and HPA drivers target the VisionModel's scale subresource with the policy's sizing."""

from typing import Any

import pytest

from builders import plan, spec
from vlm_operator.api.config import OperatorConfig
from vlm_operator.render.autoscaling import (
    render_horizontal_pod_autoscaler,
    render_scaled_object,
    replicas_query,
)
from vlm_operator.render.workload import RenderInput

PROMETHEUS = {"prometheus": {"url": "http://prometheus.monitoring:9090"}}


def source(**scaling: Any) -> RenderInput:
    body = {"minReplicas": 1, "maxReplicas": 6, "warmReplicas": 2, **scaling}
    return RenderInput("qwen-vl", "team-a", "uid-1", spec(scaling=body), plan(), OperatorConfig())


def test_scaled_object_targets_the_scale_subresource() -> None:
    scaled = render_scaled_object(source(driver="keda", metricsSource=PROMETHEUS))
    assert scaled["spec"]["scaleTargetRef"] == {
        "apiVersion": "vlm-operator.io/v1alpha1",
        "kind": "VisionModel",
        "name": "qwen-vl",
    }
    assert (scaled["spec"]["minReplicaCount"], scaled["spec"]["maxReplicaCount"]) == (1, 6)
    trigger = scaled["spec"]["triggers"][0]
    assert trigger["type"] == "prometheus"
    assert trigger["metadata"]["serverAddress"] == "http://prometheus.monitoring:9090"
    assert trigger["metadata"]["threshold"] == "1"
    assert scaled["metadata"]["ownerReferences"][0]["uid"] == "uid-1"


def test_keda_query_is_demand_plus_warm() -> None:
    query = replicas_query(source(driver="keda", metricsSource=PROMETHEUS))
    # 16 sequences per replica at 80% is 12 requests per replica.
    assert query.startswith("ceil(((sum(vllm:num_requests_running{")
    assert query.endswith(") / 12) + 2")
    assert r'namespace="team-a",pod=~"qwen\\-vl-[a-z0-9]+-[a-z0-9]+"' in query


def test_behaviour_is_fast_up_slow_down() -> None:
    scaled = render_scaled_object(
        source(driver="keda", metricsSource=PROMETHEUS, scaleDownDelaySeconds=600)
    )
    behavior = scaled["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    assert behavior["scaleUp"]["stabilizationWindowSeconds"] == 0
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] == 600
    assert behavior["scaleDown"]["policies"] == [{"type": "Pods", "value": 1, "periodSeconds": 150}]


def test_hpa_uses_the_external_in_flight_metric_and_warm_floor() -> None:
    hpa = render_horizontal_pod_autoscaler(source(driver="hpa", metricsSource=PROMETHEUS))
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["minReplicas"] == 3
    assert hpa["spec"]["maxReplicas"] == 6
    metric = hpa["spec"]["metrics"][0]["external"]
    assert metric["metric"]["name"] == "vllm_requests_in_flight"
    assert metric["metric"]["selector"] == {
        "matchLabels": {"vlm_operator_io_visionmodel": "qwen-vl"}
    }
    assert metric["target"] == {"type": "AverageValue", "averageValue": "12"}


def test_drivers_need_scaling() -> None:
    unscaled = RenderInput("q", "n", "u", spec(), plan(), OperatorConfig())
    with pytest.raises(ValueError, match=r"spec\.scaling"):
        render_scaled_object(unscaled)
