"""The operator against the real local control plane: every behaviour of the reconcile loop."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

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


def vllm_container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers: list[dict[str, Any]] = deployment["spec"]["template"]["spec"]["containers"]
    return containers[0]


def test_apply_becomes_ready_on_a_matching_gpu_node(
    namespace: str, operator: OperatorProcess
) -> None:
    apply_manifest(visionmodel(namespace, replicas=2))
    body = wait_ready(namespace)
    plan = body["status"]["plan"]
    assert plan["feasible"] is True
    deployment = get_object("deployment", "qwen-vl", namespace)
    assert deployment is not None
    gpus = vllm_container(deployment)["resources"]["limits"]["nvidia.com/gpu"]
    assert int(gpus) == plan["gpusPerReplica"]
    pods = list_objects("pod", namespace, "vlm-operator.io/visionmodel=qwen-vl")
    assert len(pods) == 2
    for pod in pods:
        node = get_object("node", pod["spec"]["nodeName"])
        assert node is not None
        assert node["metadata"]["labels"]["nvidia.com/gpu.product"] == plan["gpuProduct"]
        assert pod["status"]["phase"] == "Running"
    assert body["status"]["readyReplicas"] == 2
    assert body["status"]["endpoint"] == f"http://qwen-vl.{namespace}.svc:8000/v1"
    service = get_object("service", "qwen-vl", namespace)
    assert service is not None
    assert service["spec"]["ports"][0]["name"] == "http"
    assert get_object("poddisruptionbudget", "qwen-vl", namespace) is not None
    events = list_objects("event", namespace, field_selector="involvedObject.kind=VisionModel")
    assert "PlanChosen" in {event["reason"] for event in events}


def test_get_shows_the_columns(namespace: str, operator: OperatorProcess) -> None:
    apply_manifest(visionmodel(namespace))
    wait_ready(namespace)
    table = kubectl("get", "vlm", "-n", namespace, "-o", "wide").stdout
    header, row = table.splitlines()[:2]
    for column in ("MODEL", "READY", "REPLICAS", "GPUS", "PRECISION", "TP", "AGE", "ENDPOINT"):
        assert column in header
    assert "Qwen/Qwen2.5-VL-7B-Instruct" in row
    assert "True" in row


def test_spec_change_replans_and_rolls_out(namespace: str, operator: OperatorProcess) -> None:
    apply_manifest(visionmodel(namespace))
    before = wait_ready(namespace)["status"]["plan"]
    apply_manifest(
        visionmodel(
            namespace,
            workload={"maxImagesPerRequest": 1, "maxImageSize": {"width": 640, "height": 480}},
        )
    )
    after = wait_ready(namespace)["status"]["plan"]
    assert after["engineArgs"] != before["engineArgs"]
    assert after["tokensPerImage"] < before["tokensPerImage"]
    deployment = get_object("deployment", "qwen-vl", namespace)
    assert deployment is not None
    assert vllm_container(deployment)["args"] == after["engineArgs"]
    events = list_objects("event", namespace, field_selector="involvedObject.kind=VisionModel")
    assert "PlanChanged" in {event["reason"] for event in events}


def test_infeasible_spec_stalls_and_keeps_the_deployment(
    namespace: str, operator: OperatorProcess
) -> None:
    apply_manifest(visionmodel(namespace))
    wait_ready(namespace)
    before = get_object("deployment", "qwen-vl", namespace)
    assert before is not None
    huge = visionmodel(
        namespace,
        model={"id": "Qwen/Qwen2.5-VL-72B-Instruct"},
        hardware={"gpuProduct": "Tesla-T4", "maxGpusPerReplica": 1},
    )
    apply_manifest(huge)
    body = wait_condition(namespace, "Stalled", "InsufficientGPUMemory")
    message = condition(body, "Ready")["message"]
    assert "running Deployment is unchanged" in message
    assert body["status"]["plan"]["feasible"] is False
    after = get_object("deployment", "qwen-vl", namespace)
    assert after is not None
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert after["status"].get("readyReplicas") == 1
    warnings = list_objects("event", namespace, field_selector="type=Warning")
    assert "InsufficientGPUMemory" in {event["reason"] for event in warnings}


def test_no_matching_gpu_nodes(namespace: str, operator: OperatorProcess) -> None:
    apply_manifest(visionmodel(namespace, hardware={"gpuProduct": "NVIDIA-B200"}))
    body = wait_condition(namespace, "Stalled", "NoMatchingGPUNodes")
    assert "NVIDIA-B200" in condition(body, "Stalled")["message"]
    assert get_object("deployment", "qwen-vl", namespace) is None


def test_children_are_restored_after_edit_or_delete(
    namespace: str, operator: OperatorProcess
) -> None:
    apply_manifest(visionmodel(namespace))
    wait_ready(namespace)
    kubectl("delete", "service", "qwen-vl", "-n", namespace)
    wait_for(
        lambda: get_object("service", "qwen-vl", namespace), 60, "Service restored after delete"
    )
    patch = {"spec": {"template": {"spec": {"nodeSelector": {"nvidia.com/gpu.product": "x"}}}}}
    kubectl(
        "patch", "deployment", "qwen-vl", "-n", namespace, "--type=merge", "-p", json.dumps(patch)
    )

    def selector_restored() -> bool:
        deployment = get_object("deployment", "qwen-vl", namespace) or {}
        selector = deployment.get("spec", {}).get("template", {}).get("spec", {})
        return bool(selector.get("nodeSelector", {}).get("nvidia.com/gpu.product") != "x")

    wait_for(selector_restored, 60, "Deployment nodeSelector restored")


def test_deleting_the_visionmodel_collects_children(
    namespace: str, operator: OperatorProcess
) -> None:
    apply_manifest(visionmodel(namespace))
    wait_ready(namespace)
    kubectl("delete", "visionmodel", "qwen-vl", "-n", namespace)

    def children_gone() -> bool:
        return all(
            get_object(kind, "qwen-vl", namespace) is None
            for kind in ("deployment", "service", "poddisruptionbudget")
        )

    wait_for(children_gone, 90, "children garbage-collected")

    def gauges_forgotten() -> bool:
        with urllib.request.urlopen(operator.metrics_url, timeout=5) as response:
            text = response.read().decode()
        return f'namespace="{namespace}",visionmodel="qwen-vl"' not in text

    # The delete event, not a later timer, makes the operator forget the VisionModel.
    wait_for(gauges_forgotten, 30, "the deleted VisionModel's gauges dropped")


def test_restart_mid_rollout_converges_without_duplicates(
    namespace: str, operator: OperatorProcess
) -> None:
    apply_manifest(visionmodel(namespace))
    wait_ready(namespace)
    apply_manifest(visionmodel(namespace, replicas=3, hardware={"maxGpusPerReplica": 1}))
    operator.kill()
    operator.start()
    body = wait_ready(namespace)
    assert body["status"]["readyReplicas"] == 3
    managed = "app.kubernetes.io/managed-by=vlm-operator"
    for kind in ("deployment", "service", "poddisruptionbudget"):
        assert len(list_objects(kind, namespace, managed)) == 1, kind


def test_scale_subresource(namespace: str, operator: OperatorProcess) -> None:
    apply_manifest(visionmodel(namespace))
    wait_ready(namespace)
    kubectl("scale", "vlm", "qwen-vl", "-n", namespace, "--replicas=3")

    def three_ready() -> dict[str, Any] | None:
        body = get_object("visionmodel", "qwen-vl", namespace) or {}
        return body if body.get("status", {}).get("readyReplicas") == 3 else None

    body = wait_for(three_ready, 120, "three ready replicas")
    wait_ready(namespace)
    scale = json.loads(
        kubectl(
            "get",
            "--raw",
            f"/apis/vlm-operator.io/v1alpha1/namespaces/{namespace}/visionmodels/qwen-vl/scale",
        ).stdout
    )
    assert scale["spec"]["replicas"] == 3
    assert scale["status"]["replicas"] == 3
    assert scale["status"]["selector"] == body["status"]["selector"]


def test_idle_reconcile_writes_nothing(namespace: str, operator: OperatorProcess) -> None:
    apply_manifest(visionmodel(namespace))
    wait_ready(namespace)

    def versions() -> tuple[str, ...]:
        objects = [
            get_object("visionmodel", "qwen-vl", namespace),
            get_object("deployment", "qwen-vl", namespace),
            get_object("service", "qwen-vl", namespace),
        ]
        return tuple(str((item or {})["metadata"]["resourceVersion"]) for item in objects)

    before_versions = versions()
    before_count = operator.reconcile_count()
    # The resync timer runs every few seconds in tests; wait for three more reconciles.
    wait_for(lambda: operator.reconcile_count() >= before_count + 3, 60, "three resyncs")
    assert versions() == before_versions


def test_operator_metrics(namespace: str, operator: OperatorProcess) -> None:
    apply_manifest(visionmodel(namespace))
    wait_ready(namespace)
    with urllib.request.urlopen(operator.metrics_url, timeout=5) as response:
        text = response.read().decode()
    assert "vlm_operator_reconcile_total" in text
    assert "vlm_operator_reconcile_duration_seconds_bucket" in text
    assert (
        f'vlm_operator_ready_replicas{{namespace="{namespace}",visionmodel="qwen-vl"}} 1.0' in text
    )
    assert "vlm_operator_planned_gpus_per_replica" in text


def test_examples_are_accepted_by_the_api_server(namespace: str) -> None:
    """Every example passes the API server's schema and CEL rules as written."""
    for path in sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.yaml")):
        manifest = yaml.safe_load(path.read_text(encoding="utf-8"))
        manifest["metadata"]["namespace"] = namespace
        kubectl("apply", "--dry-run=server", "-f", "-", input_text=json.dumps(manifest))


POD_MONITOR_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "podmonitors.monitoring.coreos.com"},
    "spec": {
        "group": "monitoring.coreos.com",
        "scope": "Namespaced",
        "names": {"kind": "PodMonitor", "plural": "podmonitors", "singular": "podmonitor"},
        "versions": [
            {
                "name": "v1",
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


@pytest.fixture
def pod_monitor_crd(cluster: object) -> Iterator[None]:
    """The Prometheus operator's PodMonitor kind, installed for one test only."""
    apply_manifest(POD_MONITOR_CRD)
    kubectl("wait", "--for=condition=Established", "crd/podmonitors.monitoring.coreos.com")
    yield
    kubectl("delete", "crd", "podmonitors.monitoring.coreos.com", "--wait=false")


def test_pod_monitor_when_the_prometheus_operator_is_installed(
    namespace: str, pod_monitor_crd: None, operator: OperatorProcess
) -> None:
    apply_manifest(visionmodel(namespace))
    wait_ready(namespace)
    monitor = wait_for(
        lambda: get_object("podmonitor.monitoring.coreos.com", "qwen-vl", namespace),
        60,
        "the PodMonitor",
    )
    assert monitor["spec"]["podMetricsEndpoints"] == [{"port": "http", "path": "/metrics"}]
    assert monitor["metadata"]["ownerReferences"][0]["kind"] == "VisionModel"


def test_unknown_model_and_missing_config_map_stall_with_reasons(
    namespace: str, operator: OperatorProcess
) -> None:
    apply_manifest(visionmodel(namespace, "unknown", model={"id": "example/not-a-catalog-model"}))
    body = wait_condition(namespace, "Stalled", "UnsupportedModel", name="unknown")
    assert "example/not-a-catalog-model" in condition(body, "Stalled")["message"]
    missing = {"id": "example/custom-vlm", "architecture": {"configMapRef": {"name": "absent"}}}
    apply_manifest(visionmodel(namespace, "custom", model=missing))
    body = wait_condition(namespace, "Stalled", "InvalidSpec", name="custom")
    assert (
        "configMapRef: ConfigMap absent has no key config.json"
        in condition(body, "Stalled")["message"]
    )
    assert get_object("deployment", "custom", namespace) is None
