"""Scaling drivers on the real control plane: exactly one writer of spec.replicas."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from harness import (
    OperatorProcess,
    apply_manifest,
    condition,
    get_object,
    kubectl,
    list_objects,
    visionmodel,
    wait_condition,
    wait_for,
    wait_ready,
)

pytestmark = pytest.mark.e2e

UNREACHABLE_PROMETHEUS = {"prometheus": {"url": "http://127.0.0.1:1"}}

SCALED_OBJECT_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "scaledobjects.keda.sh"},
    "spec": {
        "group": "keda.sh",
        "scope": "Namespaced",
        "names": {"kind": "ScaledObject", "plural": "scaledobjects", "singular": "scaledobject"},
        "versions": [
            {
                "name": "v1alpha1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "x-kubernetes-preserve-unknown-fields": True,
                    }
                },
            }
        ],
    },
}


def scaled(namespace: str, **scaling: Any) -> dict[str, Any]:
    body = {"minReplicas": 1, "maxReplicas": 3, "metricsSource": UNREACHABLE_PROMETHEUS, **scaling}
    return visionmodel(namespace, scaling=body)


@pytest.fixture
def keda_crd(cluster: object) -> Iterator[None]:
    """KEDA's ScaledObject kind (its schema only: KEDA itself does not run here)."""
    apply_manifest(SCALED_OBJECT_CRD)
    kubectl("wait", "--for=condition=Established", "crd/scaledobjects.keda.sh")
    yield
    kubectl("delete", "crd", "scaledobjects.keda.sh", "--wait=false")


def test_missing_metrics_hold_and_say_so(namespace: str, operator: OperatorProcess) -> None:
    apply_manifest(scaled(namespace))
    wait_ready(namespace)

    def held() -> dict[str, Any] | None:
        body = get_object("visionmodel", "qwen-vl", namespace) or {}
        autoscaling = body.get("status", {}).get("autoscaling", {})
        return autoscaling if autoscaling.get("reason", "").startswith("holding") else None

    autoscaling = wait_for(held, 60, "the autoscaler to hold")
    assert "Prometheus at http://127.0.0.1:1 is unavailable" in autoscaling["reason"]
    assert autoscaling["desiredReplicas"] == 1
    body = get_object("visionmodel", "qwen-vl", namespace)
    assert body is not None
    assert body["spec"]["replicas"] == 1
    warnings = list_objects("event", namespace, field_selector="type=Warning")
    assert "ScalingHeld" in {event["reason"] for event in warnings}


def test_keda_without_keda_installed_stalls(namespace: str, operator: OperatorProcess) -> None:
    apply_manifest(scaled(namespace, driver="keda"))
    body = wait_condition(namespace, "Stalled", "AutoscalerUnavailable")
    assert "scaledobjects.keda.sh" in condition(body, "Stalled")["message"]
    deployment = get_object("deployment", "qwen-vl", namespace)
    assert deployment is not None, "the workload is applied even without its autoscaler"


def test_keda_driver_renders_a_scaled_object_and_switching_removes_it(
    namespace: str, keda_crd: None, operator: OperatorProcess
) -> None:
    apply_manifest(scaled(namespace, driver="keda"))
    wait_ready(namespace)
    scaled_object = wait_for(
        lambda: get_object("scaledobject.keda.sh", "qwen-vl", namespace), 60, "the ScaledObject"
    )
    target = scaled_object["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("VisionModel", "qwen-vl")
    assert "vllm:num_requests_waiting" in scaled_object["spec"]["triggers"][0]["metadata"]["query"]
    apply_manifest(scaled(namespace, driver="operator"))
    wait_for(
        lambda: get_object("scaledobject.keda.sh", "qwen-vl", namespace) is None,
        60,
        "the ScaledObject to go once the operator drives",
    )


def test_hpa_driver_renders_an_hpa_on_the_scale_subresource(
    namespace: str, operator: OperatorProcess
) -> None:
    apply_manifest(scaled(namespace, driver="hpa", warmReplicas=1))
    wait_ready(namespace)
    hpa = wait_for(
        lambda: get_object("hpa", "qwen-vl", namespace), 60, "the HorizontalPodAutoscaler"
    )
    assert hpa["spec"]["scaleTargetRef"]["kind"] == "VisionModel"
    assert hpa["spec"]["minReplicas"] == 2
    assert hpa["spec"]["metrics"][0]["external"]["metric"]["name"] == "vllm_requests_in_flight"
    apply_manifest(scaled(namespace))
    wait_for(lambda: get_object("hpa", "qwen-vl", namespace) is None, 60, "the HPA to go")
