"""Print the fake GPU Nodes of a fleet file as a Kubernetes List (JSON) for kubectl apply."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any


def node_name(product: str, index: int) -> str:
    """A DNS-safe node name such as gpu-nvidia-l40s-0."""
    return f"gpu-{re.sub(r'[^a-z0-9]+', '-', product.lower()).strip('-')}-{index}"


def gpu_node(pool: dict[str, Any], index: int) -> dict[str, Any]:
    """One fake node with GPU feature discovery labels, GPU capacity and the GPU taint."""
    name = node_name(pool["product"], index)
    resources = {
        "cpu": "96",
        "memory": "1024Gi",
        "pods": "110",
        "nvidia.com/gpu": str(pool["gpusPerNode"]),
    }
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {"kwok.x-k8s.io/node": "fake"},
            "labels": {
                "type": "kwok",
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "nvidia.com/gpu.present": "true",
                "nvidia.com/gpu.product": pool["product"],
                "nvidia.com/gpu.memory": str(pool["memoryMiB"]),
                "nvidia.com/gpu.count": str(pool["gpusPerNode"]),
                "nvidia.com/gpu.compute.major": str(pool["computeMajor"]),
                "nvidia.com/gpu.compute.minor": str(pool["computeMinor"]),
            },
        },
        "spec": {"taints": [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}]},
        "status": {"capacity": resources, "allocatable": resources},
    }


def main(fleet_path: str) -> None:
    fleet = json.loads(Path(fleet_path).read_text(encoding="utf-8"))
    items = [gpu_node(pool, index) for pool in fleet["pools"] for index in range(pool["nodes"])]
    json.dump({"apiVersion": "v1", "kind": "List", "items": items}, sys.stdout, indent=1)


if __name__ == "__main__":
    main(sys.argv[1])
