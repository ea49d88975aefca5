"""The local control plane itself: GPU nodes, GPU scheduling and the CRD's documentation."""

from __future__ import annotations

from typing import Any

import pytest

from harness import apply_manifest, get_object, kubectl, list_objects, wait_for

pytestmark = pytest.mark.e2e


def gpu_deployment(namespace: str, name: str, gpus: int) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists"}],
                    "containers": [
                        {
                            "name": "main",
                            "image": "example.invalid/none:1",
                            "resources": {"limits": {"nvidia.com/gpu": gpus}},
                        }
                    ],
                },
            },
        },
    }


def only_pod(namespace: str, name: str) -> dict[str, Any] | None:
    pods = list_objects("pod", namespace, f"app={name}")
    return pods[0] if len(pods) == 1 else None


def test_fleet_has_labelled_gpu_nodes(cluster: object) -> None:
    nodes = list_objects("node")
    products = {node["metadata"]["labels"]["nvidia.com/gpu.product"] for node in nodes}
    assert products >= {"NVIDIA-H100-80GB-HBM3", "NVIDIA-L40S", "Tesla-T4"}
    for node in nodes:
        labels = node["metadata"]["labels"]
        for key in ("memory", "count", "compute.major", "compute.minor"):
            assert f"nvidia.com/gpu.{key}" in labels
        assert node["status"]["allocatable"]["nvidia.com/gpu"] == labels["nvidia.com/gpu.count"]
        gpu_taint = {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}
        assert gpu_taint in node["spec"]["taints"]
        addresses = {address["address"] for address in node["status"]["addresses"]}
        assert "127.0.0.1" in addresses


def test_gpu_pod_lands_on_a_node_with_room(namespace: str) -> None:
    apply_manifest(gpu_deployment(namespace, "four-gpus", 4))

    def running() -> dict[str, Any] | None:
        pod = only_pod(namespace, "four-gpus")
        return pod if pod and pod["status"].get("phase") == "Running" else None

    pod = wait_for(running, 60, "the 4-GPU pod to run")
    node = get_object("node", pod["spec"]["nodeName"])
    assert node is not None
    assert int(node["status"]["allocatable"]["nvidia.com/gpu"]) >= 4


def test_oversized_gpu_pod_stays_pending(namespace: str) -> None:
    apply_manifest(gpu_deployment(namespace, "sixteen-gpus", 16))

    def unschedulable() -> dict[str, Any] | None:
        pod = only_pod(namespace, "sixteen-gpus")
        for condition in (pod or {}).get("status", {}).get("conditions", []):
            if condition["type"] == "PodScheduled" and condition.get("reason") == "Unschedulable":
                return dict(condition)
        return None

    condition = wait_for(unschedulable, 60, "the 16-GPU pod to be unschedulable")
    assert "Insufficient nvidia.com/gpu" in condition["message"]
    pod = only_pod(namespace, "sixteen-gpus")
    assert pod is not None
    assert pod["status"]["phase"] == "Pending"


def test_crd_is_installed_and_explained(cluster: object) -> None:
    crd = get_object("crd", "visionmodels.vlm-operator.io")
    assert crd is not None
    explained = kubectl("explain", "visionmodel.spec").stdout
    assert "The desired state of one vision-language model served by vLLM." in explained
    for field in ("model", "workload", "hardware", "scaling", "engine", "service", "replicas"):
        assert f"{field}\t" in explained or f"  {field}" in explained
