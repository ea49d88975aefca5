"""The GPU catalog, and the GPU products a cluster offers as read from its Node objects."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cache
from typing import Any

from vlm_operator.api import constants as c
from vlm_operator.catalog.data_files import load_data_file

CUDA_TO_NVML_MEMORY_RATIO = 0.98
"""CUDA reports a little less than the NVML total that nvidia.com/gpu.memory carries
(99.4% on an H100, 98.2% on an RTX 4090); unknown products are sized with the lower figure."""

UNKNOWN_COMPUTE_CAPABILITY = (7, 5)
"""Assumed for a product with no compute labels: fp16 and int4 only, like a T4."""

MIB_PER_GIB = 1024

UNKNOWN_RELATIVE_COST = 100.0
"""Cost assumed for a product outside the catalog without a configured cost: last resort."""

MIN_COMPUTE_CAPABILITY = {"bf16": (8, 0), "fp8": (8, 9), "awq": (7, 5), "gptq": (6, 0)}
"""The oldest GPU architecture each precision runs on: bf16 from Ampere, fp8 compute from Ada."""


@dataclass(frozen=True)
class GpuModel:
    """A GPU the planner can size for."""

    name: str
    products: tuple[str, ...]
    memory_gib: float
    compute_capability: tuple[int, int]
    relative_cost: float = UNKNOWN_RELATIVE_COST
    """Price per GPU-hour relative to the others: the planner prefers the cheapest fit."""

    @property
    def product(self) -> str:
        """The nvidia.com/gpu.product value plans name this GPU by."""
        return self.products[0]

    @property
    def supports_bf16(self) -> bool:
        """bf16 needs compute capability 8.0 (Ampere) or newer."""
        return self.compute_capability >= MIN_COMPUTE_CAPABILITY["bf16"]

    @property
    def supports_fp8(self) -> bool:
        """Native fp8 compute needs compute capability 8.9 (Ada) or newer."""
        return self.compute_capability >= MIN_COMPUTE_CAPABILITY["fp8"]

    @property
    def compute_capability_text(self) -> str:
        """The compute capability as "8.9"."""
        major, minor = self.compute_capability
        return f"{major}.{minor}"


@dataclass(frozen=True)
class GpuOffer:
    """A GPU product the cluster actually has."""

    product: str
    """nvidia.com/gpu.product label value."""
    memory_mib: int | None
    """nvidia.com/gpu.memory label (MiB), for products outside the catalog."""
    compute_capability: tuple[int, int] | None
    """From nvidia.com/gpu.compute.major/minor."""
    max_gpus_per_node: int
    """Largest allocatable nvidia.com/gpu on one node of this product."""
    max_free_gpus_per_node: int | None = None
    """Most GPUs not yet requested by running pods on one node of this product; None when the
    pods were not counted."""


@cache
def gpu_catalog() -> tuple[GpuModel, ...]:
    """Every GPU in the catalog, in catalog order."""
    return tuple(
        GpuModel(
            name=entry["name"],
            products=tuple(entry["products"]),
            memory_gib=float(entry["memory_gib"]),
            compute_capability=(entry["compute_capability"][0], entry["compute_capability"][1]),
            relative_cost=float(entry["relative_cost"]),
        )
        for entry in load_data_file("gpus.yaml")
    )


@cache
def _gpus_by_product() -> dict[str, GpuModel]:
    return {product.lower(): gpu for gpu in gpu_catalog() for product in gpu.products}


def find_gpu(product: str) -> GpuModel | None:
    """The catalog GPU with this nvidia.com/gpu.product value (case-insensitive), if any,
    with that value first among its products so that plans name it as the cluster does."""
    known = _gpus_by_product().get(product.lower())
    if known is None:
        return None
    matched = next(name for name in known.products if name.lower() == product.lower())
    others = tuple(name for name in known.products if name != matched)
    return replace(known, products=(matched, *others))


def gpu_for_offer(offer: GpuOffer) -> GpuModel | None:
    """The GPU an offer stands for: the catalog entry, else one described by its node labels.

    None when the product is unknown and its nodes carry no nvidia.com/gpu.memory label."""
    known = find_gpu(offer.product)
    if known is not None:
        return replace(known, products=(offer.product, *known.products[1:]))
    if offer.memory_mib is None:
        return None
    return GpuModel(
        name=offer.product,
        products=(offer.product,),
        memory_gib=round(offer.memory_mib * CUDA_TO_NVML_MEMORY_RATIO / MIB_PER_GIB, 2),
        compute_capability=offer.compute_capability or UNKNOWN_COMPUTE_CAPABILITY,
    )


def _int_or_none(value: Any) -> int | None:
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return None


def _requested_gpus(pods: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """nvidia.com/gpu requested per node by pods that hold their GPUs (bound, not finished)."""
    requested: dict[str, int] = {}
    for pod in pods:
        node = (pod.get("spec") or {}).get("nodeName")
        phase = (pod.get("status") or {}).get("phase")
        if not node or phase in ("Succeeded", "Failed"):
            continue
        for container in (pod.get("spec") or {}).get("containers") or []:
            resources = container.get("resources") or {}
            limits = resources.get("limits") or {}
            requests = resources.get("requests") or {}
            count = _int_or_none(requests.get(c.GPU_RESOURCE, limits.get(c.GPU_RESOURCE)))
            requested[node] = requested.get(node, 0) + (count or 0)
    return requested


def gpu_offers_from_nodes(
    nodes: Sequence[Mapping[str, Any]], pods: Sequence[Mapping[str, Any]] | None = None
) -> list[GpuOffer]:
    """The GPU products schedulable nodes offer, one offer per product, sorted by product.

    Nodes without allocatable nvidia.com/gpu, without an nvidia.com/gpu.product label, or
    marked unschedulable are ignored. Memory and compute labels come from the first node of a
    product that carries them; max_gpus_per_node is the largest allocatable count. Given the
    pods, max_free_gpus_per_node is the most allocatable-minus-requested on one node."""
    requested = _requested_gpus(pods) if pods is not None else {}
    found: dict[str, GpuOffer] = {}
    for node in nodes:
        if (node.get("spec") or {}).get("unschedulable"):
            continue
        metadata = node.get("metadata") or {}
        labels: Mapping[str, str] = metadata.get("labels") or {}
        allocatable = (node.get("status") or {}).get("allocatable") or {}
        gpus = _int_or_none(allocatable.get(c.GPU_RESOURCE))
        product = labels.get(c.GPU_PRODUCT_LABEL)
        if not gpus or gpus <= 0 or not product:
            continue
        free = max(0, gpus - requested.get(str(metadata.get("name")), 0))
        memory_mib = _int_or_none(labels.get(c.GPU_MEMORY_LABEL))
        major = _int_or_none(labels.get(c.GPU_COMPUTE_MAJOR_LABEL))
        minor = _int_or_none(labels.get(c.GPU_COMPUTE_MINOR_LABEL))
        capability = (major, minor) if major is not None and minor is not None else None
        previous = found.get(product)
        if previous is None:
            found[product] = GpuOffer(
                product, memory_mib, capability, gpus, free if pods is not None else None
            )
        else:
            found[product] = GpuOffer(
                product,
                previous.memory_mib if previous.memory_mib is not None else memory_mib,
                previous.compute_capability or capability,
                max(previous.max_gpus_per_node, gpus),
                max(previous.max_free_gpus_per_node or 0, free) if pods is not None else None,
            )
    return [found[product] for product in sorted(found)]
