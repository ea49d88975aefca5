"""The local control plane itself: the GPU fleet, GPU scheduling by kube-scheduler, pods turned
Running by kwok, and the CRD's documentation through `kubectl explain`.

KWOK pods get fake private addresses; nothing here connects to them."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from harness import (
    REPO_ROOT,
    apply_manifest,
    condition,
    get_object,
    kubectl,
    list_objects,
    wait_for,
)

pytestmark = pytest.mark.e2e

FLEET = Path(os.environ.get("VLM_CLUSTER_FLEET", REPO_ROOT / "e2e" / "cluster" / "fleet.json"))
GPU_TAINT = {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}
GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}


def gpu_deployment(
    namespace: str, name: str, gpus: int, *, tolerate: bool = True
) -> dict[str, Any]:
    labels = {"app": name}
    pod_spec: dict[str, Any] = {
        "containers": [
            {
                "name": "main",
                "image": "example.invalid/none:1",
                "resources": {"limits": {"nvidia.com/gpu": gpus}},
            }
        ]
    }
    if tolerate:
        pod_spec["tolerations"] = [GPU_TOLERATION]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    }


def only_pod(namespace: str, name: str) -> dict[str, Any] | None:
    pods = list_objects("pod", namespace, f"app={name}")
    return pods[0] if len(pods) == 1 else None


def unschedulable(namespace: str, name: str) -> dict[str, Any] | None:
    """The pod's PodScheduled=False condition once the scheduler has given up on it."""
    found = condition(only_pod(namespace, name), "PodScheduled")
    return found if found.get("reason") == "Unschedulable" else None


def scheduling_event(namespace: str, pod_name: str) -> dict[str, Any] | None:
    events = list_objects(
        "events",
        namespace,
        field_selector=f"involvedObject.name={pod_name},reason=FailedScheduling",
    )
    return events[0] if events else None


def test_default_fleet_has_the_documented_gpus() -> None:
    pools = {
        pool["product"]: pool
        for pool in json.loads((REPO_ROOT / "e2e/cluster/fleet.json").read_text())["pools"]
    }
    expected = {
        "NVIDIA-H100-80GB-HBM3": (2, 8, 81559, 9, 0),
        "NVIDIA-L40S": (2, 4, 46068, 8, 9),
        "Tesla-T4": (1, 4, 15360, 7, 5),
    }
    keys = ("nodes", "gpusPerNode", "memoryMiB", "computeMajor", "computeMinor")
    assert {product: tuple(pool[key] for key in keys) for product, pool in pools.items()} == (
        expected
    )


def test_fleet_nodes_carry_gpu_feature_discovery_labels(cluster: Path) -> None:
    pools = json.loads(FLEET.read_text())["pools"] if FLEET.suffix == ".json" else None
    nodes = list_objects("node", label_selector="nvidia.com/gpu.present=true")
    if pools is not None:
        assert len(nodes) == sum(pool["nodes"] for pool in pools)
        by_product = {pool["product"]: pool for pool in pools}
    for node in nodes:
        labels = node["metadata"]["labels"]
        name = node["metadata"]["name"]
        if pools is not None:
            pool = by_product[labels["nvidia.com/gpu.product"]]
            assert labels["nvidia.com/gpu.memory"] == str(pool["memoryMiB"]), name
            assert labels["nvidia.com/gpu.count"] == str(pool["gpusPerNode"]), name
            assert labels["nvidia.com/gpu.compute.major"] == str(pool["computeMajor"]), name
            assert labels["nvidia.com/gpu.compute.minor"] == str(pool["computeMinor"]), name
        status = node["status"]
        assert status["capacity"]["nvidia.com/gpu"] == labels["nvidia.com/gpu.count"], name
        assert status["allocatable"]["nvidia.com/gpu"] == labels["nvidia.com/gpu.count"], name
        assert GPU_TAINT in node["spec"]["taints"], name
        assert condition(node, "Ready").get("status") == "True", name
        # kwok reports loopback as the node's address, so kubectl logs/exec stay on 127.0.0.1.
        addresses = {address["type"]: address["address"] for address in status["addresses"]}
        assert addresses["InternalIP"] == "127.0.0.1", name
        assert set(addresses.values()) <= {"127.0.0.1", "localhost"}, name


def test_gpu_pod_lands_on_a_node_with_room(namespace: str) -> None:
    apply_manifest(gpu_deployment(namespace, "four-gpus", 4))

    def running() -> dict[str, Any] | None:
        pod = only_pod(namespace, "four-gpus")
        return pod if pod and pod["status"].get("phase") == "Running" else None

    pod = wait_for(running, 60, "the 4-GPU pod to run")
    assert condition(pod, "Ready").get("status") == "True"
    node = get_object("node", pod["spec"]["nodeName"])
    assert node is not None
    assert int(node["status"]["allocatable"]["nvidia.com/gpu"]) >= 4
    rollout = kubectl("rollout", "status", "deployment/four-gpus", "-n", namespace, "--timeout=60s")
    assert "successfully rolled out" in rollout.stdout


def test_oversized_gpu_pod_stays_pending(namespace: str) -> None:
    apply_manifest(gpu_deployment(namespace, "sixteen-gpus", 16))

    found = wait_for(
        lambda: unschedulable(namespace, "sixteen-gpus"), 60, "the 16-GPU pod to be unschedulable"
    )
    assert "Insufficient nvidia.com/gpu" in found["message"]
    pod = only_pod(namespace, "sixteen-gpus")
    assert pod is not None
    assert pod["status"]["phase"] == "Pending"
    assert "nodeName" not in pod["spec"]
    event = wait_for(
        lambda: scheduling_event(namespace, pod["metadata"]["name"]),
        60,
        "a FailedScheduling event for the 16-GPU pod",
    )
    assert "Insufficient nvidia.com/gpu" in event["message"]


def test_gpu_pod_without_the_toleration_stays_pending(namespace: str) -> None:
    apply_manifest(gpu_deployment(namespace, "untolerated", 1, tolerate=False))

    found = wait_for(
        lambda: unschedulable(namespace, "untolerated"), 60, "the untolerating pod to be refused"
    )
    assert "untolerated taint" in found["message"]


def test_crd_is_installed_and_explained(cluster: Path) -> None:
    crd = get_object("crd", "visionmodels.vlm-operator.io")
    assert crd is not None
    assert condition(crd, "Established").get("status") == "True"
    explained = kubectl("explain", "visionmodel.spec").stdout
    assert "The desired state of one vision-language model served by vLLM." in explained
    for field in ("model", "workload", "hardware", "scaling", "engine", "service", "replicas"):
        assert f"\n  {field}\t" in explained, f"{field} missing from kubectl explain"
