"""gpuProduct auto on the real cluster: the cheapest product that fits, a running model kept
where it runs when the fleet changes, and new models sent where GPUs are free."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness import (
    OperatorProcess,
    apply_manifest,
    get_object,
    kubectl,
    visionmodel,
    wait_for,
    wait_ready,
)

sys.path.insert(0, str(Path(__file__).parent / "cluster"))
from nodes import gpu_node

pytestmark = pytest.mark.e2e

L40S = "NVIDIA-L40S"
H100 = "NVIDIA-H100-80GB-HBM3"
H200_POOL = {
    "product": "NVIDIA-H200",
    "nodes": 1,
    "gpusPerNode": 8,
    "memoryMiB": 143771,
    "computeMajor": 9,
    "computeMinor": 0,
}


@pytest.fixture
def h200_node() -> Iterator[dict[str, Any]]:
    """A node of a more expensive GPU product, added for the test and removed after it."""
    node = gpu_node(H200_POOL, 0)
    yield node
    kubectl("delete", "node", node["metadata"]["name"], "--ignore-not-found")


def resyncs(operator: OperatorProcess, count: int) -> None:
    """Wait until the operator has reconciled `count` more times."""
    start = operator.reconcile_count()
    wait_for(
        lambda: operator.reconcile_count() >= start + count or None,
        60,
        f"{count} more reconciles",
    )


def deployment_spec(namespace: str, name: str) -> tuple[int, str]:
    deployment = get_object("deployment", name, namespace)
    assert deployment is not None
    return deployment["metadata"]["generation"], json.dumps(deployment["spec"], sort_keys=True)


def test_a_more_expensive_pool_leaves_a_running_auto_model_untouched(
    namespace: str, operator: OperatorProcess, h200_node: dict[str, Any]
) -> None:
    apply_manifest(visionmodel(namespace))
    plan = wait_ready(namespace)["status"]["plan"]
    # One GPU per replica fits on an L40S (relative cost 3.8) or an H100 (24); a T4 is too small.
    assert (plan["gpuProduct"], plan["gpusPerReplica"]) == (L40S, 1), plan
    before = deployment_spec(namespace, "qwen-vl")

    apply_manifest(h200_node)
    resyncs(operator, 3)

    assert deployment_spec(namespace, "qwen-vl") == before
    body = get_object("visionmodel", "qwen-vl", namespace)
    assert body is not None
    assert body["status"]["plan"]["gpuProduct"] == L40S


def test_a_full_pool_keeps_its_model_and_sends_the_next_one_where_gpus_are_free(
    namespace: str, operator: OperatorProcess
) -> None:
    # One GPU per replica: a T4 is too small, an L40S the cheapest fit. Eight replicas fill
    # both four-GPU L40S nodes of the fleet.
    hardware = {"gpuProduct": "auto", "maxGpusPerReplica": 1}
    apply_manifest(visionmodel(namespace, "filler", replicas=8, hardware=hardware))
    filler = wait_ready(namespace, "filler", timeout=180)["status"]["plan"]
    assert filler["gpuProduct"] == L40S
    before = deployment_spec(namespace, "filler")

    apply_manifest(visionmodel(namespace, "second", hardware=hardware))
    second = wait_ready(namespace, "second", timeout=180)["status"]["plan"]
    assert second["gpuProduct"] == H100
    assert f"{L40S}/bf16/tp1 is cheaper but no node of it has 1 free GPU" in second["placement"]

    resyncs(operator, 3)
    assert deployment_spec(namespace, "filler") == before
