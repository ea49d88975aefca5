"""Print the fake GPU Nodes of a fleet file as a Kubernetes List (JSON) for `kubectl apply -f -`.

The fleet file is JSON (or YAML, when PyYAML is importable) with a list of pools:

    pools:
    - {product: NVIDIA-L40S, nodes: 2, gpusPerNode: 4, memoryMiB: 46068,
       computeMajor: 8, computeMinor: 9}

Each node carries the labels NVIDIA's GPU feature discovery sets, `nvidia.com/gpu` in capacity
and allocatable, and the taint GPU node pools usually have. kwok keeps the given status and marks
the node Ready; kube-scheduler does the GPU accounting.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

POOL_KEYS = ("product", "nodes", "gpusPerNode", "memoryMiB", "computeMajor", "computeMinor")
NODE_RESOURCES = {"cpu": "96", "memory": "1024Gi", "pods": "110", "ephemeral-storage": "2Ti"}
GPU_TAINT = {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}


def node_name(product: str, index: int) -> str:
    """A DNS-safe node name such as gpu-nvidia-l40s-0."""
    return f"gpu-{re.sub(r'[^a-z0-9]+', '-', product.lower()).strip('-')}-{index}"


def gpu_node(pool: dict[str, Any], index: int) -> dict[str, Any]:
    """One fake node with GPU feature discovery labels, GPU capacity and the GPU taint."""
    name = node_name(pool["product"], index)
    resources = {**NODE_RESOURCES, "nvidia.com/gpu": str(pool["gpusPerNode"])}
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
        "spec": {"taints": [GPU_TAINT]},
        "status": {"capacity": resources, "allocatable": resources},
    }


def load_fleet(path: Path) -> list[dict[str, Any]]:
    """The pools of a fleet file, checked for the keys every pool needs."""
    text = path.read_text(encoding="utf-8")
    if path.suffix in (".yaml", ".yml"):
        import yaml  # only needed for YAML fleets

        fleet = yaml.safe_load(text)
    else:
        fleet = json.loads(text)
    pools: list[dict[str, Any]] = fleet["pools"]
    for number, pool in enumerate(pools):
        missing = [key for key in POOL_KEYS if key not in pool]
        if missing:
            raise SystemExit(f"{path}: pool {number} lacks {', '.join(missing)}")
    return pools


def fleet_nodes(pools: list[dict[str, Any]]) -> dict[str, Any]:
    """All nodes of the fleet as one List object."""
    items = [gpu_node(pool, index) for pool in pools for index in range(pool["nodes"])]
    return {"apiVersion": "v1", "kind": "List", "items": items}


def main(argv: list[str]) -> None:
    if len(argv) != 2:
        raise SystemExit(f"usage: {argv[0]} FLEET_FILE")
    json.dump(fleet_nodes(load_fleet(Path(argv[1]))), sys.stdout, indent=1)


if __name__ == "__main__":
    main(sys.argv)
