"""GPU catalog facts and reading GPU offers from Node objects."""

from __future__ import annotations

from typing import Any

import pytest

from vlm_operator.catalog.gpus import (
    GpuOffer,
    find_gpu,
    gpu_catalog,
    gpu_for_offer,
    gpu_offers_from_nodes,
)

REQUIRED_GPUS = {
    "T4", "A10G", "L4", "L40S", "A100-40GB", "A100-80GB",
    "H100-SXM", "H100-PCIe", "H100-NVL", "H200", "B200", "RTX-4090",
}  # fmt: skip


def node(
    product: str | None = "NVIDIA-L4",
    gpus: str | None = "4",
    unschedulable: bool = False,
    gpu_labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A Node object as the API server returns it."""
    all_labels = {"kubernetes.io/hostname": "n"}
    if product is not None:
        all_labels["nvidia.com/gpu.product"] = product
    all_labels.update({f"nvidia.com/gpu.{key}": value for key, value in (gpu_labels or {}).items()})
    allocatable = {"cpu": "8"} if gpus is None else {"cpu": "8", "nvidia.com/gpu": gpus}
    return {
        "metadata": {"name": "n", "labels": all_labels},
        "spec": {"unschedulable": True} if unschedulable else {},
        "status": {"allocatable": allocatable},
    }


def test_catalog_covers_the_required_gpus() -> None:
    assert {gpu.name for gpu in gpu_catalog()} == REQUIRED_GPUS


@pytest.mark.parametrize(
    ("product", "memory_gib", "bf16", "fp8"),
    [
        ("Tesla-T4", 14.58, False, False),
        ("NVIDIA-A10G", 22.0, True, False),
        ("NVIDIA-L4", 22.0, True, True),
        ("NVIDIA-A100-SXM4-40GB", 39.38, True, False),
        ("nvidia-a100-80gb-pcie", 79.15, True, False),
        ("NVIDIA-H100-80GB-HBM3", 79.18, True, True),
        ("NVIDIA-H200", 139.80, True, True),
        ("NVIDIA-GeForce-RTX-4090", 23.55, True, True),
    ],
)
def test_find_gpu_by_product_label(product: str, memory_gib: float, bf16: bool, fp8: bool) -> None:
    gpu = find_gpu(product)
    assert gpu is not None
    assert gpu.product.lower() == product.lower()
    assert (gpu.memory_gib, gpu.supports_bf16, gpu.supports_fp8) == (memory_gib, bf16, fp8)


def test_unknown_product_is_described_by_its_labels() -> None:
    gpu = gpu_for_offer(GpuOffer("NVIDIA-A40", 46068, (8, 6), 2))
    assert gpu is not None
    assert (gpu.product, gpu.compute_capability) == ("NVIDIA-A40", (8, 6))
    assert gpu.memory_gib == pytest.approx(44.09, abs=0.01)
    assert gpu_for_offer(GpuOffer("NVIDIA-A40", None, None, 2)) is None


def test_offer_of_a_catalog_alias_keeps_the_cluster_spelling() -> None:
    gpu = gpu_for_offer(GpuOffer("NVIDIA-A100-PCIE-40GB", None, None, 8))
    assert gpu is not None
    assert (gpu.product, gpu.memory_gib) == ("NVIDIA-A100-PCIE-40GB", 39.38)


HOPPER_LABELS = {"compute.major": "9", "compute.minor": "0"}


@pytest.mark.parametrize(
    ("nodes", "expected"),
    [
        ([node()], [GpuOffer("NVIDIA-L4", None, None, 4)]),
        ([node(gpus=None)], []),
        ([node(gpus="0")], []),
        ([node(product=None)], []),
        ([node(unschedulable=True)], []),
        (
            [
                node(gpus="2", gpu_labels={"memory": "23034"}),
                node(gpus="8", gpu_labels={"compute.major": "8"}),
            ],
            [GpuOffer("NVIDIA-L4", 23034, None, 8)],
        ),
        (
            [
                node("NVIDIA-H100-80GB-HBM3", "8", gpu_labels=HOPPER_LABELS),
                node("NVIDIA-A10G", "1"),
            ],
            [GpuOffer("NVIDIA-A10G", None, None, 1),
             GpuOffer("NVIDIA-H100-80GB-HBM3", None, (9, 0), 8)],
        ),
    ],
)  # fmt: skip
def test_gpu_offers_from_nodes(nodes: list[dict[str, Any]], expected: list[GpuOffer]) -> None:
    assert gpu_offers_from_nodes(nodes) == expected
