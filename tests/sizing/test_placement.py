"""Where a plan runs: the cheapest fit, kept while it fits, free GPUs, the fp8 KV-cache gate."""

from __future__ import annotations

from typing import Any

from vlm_operator.api.v1alpha1 import VisionModelSpec
from vlm_operator.catalog.gpus import GpuOffer, gpu_offers_from_nodes
from vlm_operator.sizing import plan_visionmodel

H100 = "NVIDIA-H100-80GB-HBM3"
L40S = "NVIDIA-L40S"
A100 = "NVIDIA-A100-SXM4-80GB"


def spec(**hardware: Any) -> VisionModelSpec:
    return VisionModelSpec.model_validate(
        {"model": {"id": "Qwen/Qwen2.5-VL-7B-Instruct"}, "hardware": hardware}
    )


def offer(product: str, free: int | None = None, gpus: int = 8) -> GpuOffer:
    return GpuOffer(product, None, None, gpus, free)


def test_auto_takes_the_cheapest_product_that_fits_not_the_biggest_cache() -> None:
    plan = plan_visionmodel(spec(), gpu_offers=[offer(H100), offer(L40S)])
    assert plan.feasible, plan.reason
    assert plan.gpu_product == L40S
    assert plan.placement == "cheapest feasible"


def test_operator_costs_override_the_catalog() -> None:
    plan = plan_visionmodel(
        spec(), gpu_offers=[offer(H100), offer(L40S)], gpu_costs={H100: 1.0, L40S: 5.0}
    )
    assert plan.gpu_product == H100


def test_a_running_model_keeps_its_product_when_a_cheaper_pool_appears() -> None:
    running = plan_visionmodel(spec(), gpu_offers=[offer(H100)])
    assert running.gpu_product == H100
    previous = running.to_status().model_dump(by_alias=True)
    plan = plan_visionmodel(spec(), gpu_offers=[offer(H100), offer(L40S)], previous=previous)
    assert (plan.gpu_product, plan.precision) == (H100, running.precision)
    assert plan.engine_args == running.engine_args
    assert f"would move to {L40S}/bf16/tp1" in plan.placement


def test_a_running_model_moves_when_its_product_is_gone() -> None:
    previous = plan_visionmodel(spec(), gpu_offers=[offer(H100)]).to_status()
    plan = plan_visionmodel(
        spec(), gpu_offers=[offer(L40S)], previous=previous.model_dump(by_alias=True)
    )
    assert plan.gpu_product == L40S


def test_a_full_preferred_product_sends_new_models_where_gpus_are_free() -> None:
    plan = plan_visionmodel(spec(), gpu_offers=[offer(L40S, free=0), offer(H100, free=8)])
    assert plan.gpu_product == H100
    assert plan.placement == (
        f"{L40S}/bf16/tp1 is cheaper but no node of it has 1 free GPU; {H100} has room"
    )


def test_when_nothing_has_room_the_plan_says_replicas_wait() -> None:
    plan = plan_visionmodel(spec(), gpu_offers=[offer(L40S, free=0), offer(H100, free=0)])
    assert plan.feasible
    assert plan.gpu_product == L40S
    assert plan.placement.startswith(f"replicas wait for GPUs: no {L40S} node has 1 free")


def node(name: str, product: str, gpus: int) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": {"nvidia.com/gpu.product": product}},
        "spec": {},
        "status": {"allocatable": {"nvidia.com/gpu": str(gpus)}},
    }


def pod(node_name: str, gpus: int, phase: str = "Running") -> dict[str, Any]:
    return {
        "metadata": {"name": f"p-{node_name}", "namespace": "ns"},
        "spec": {
            "nodeName": node_name,
            "containers": [{"resources": {"limits": {"nvidia.com/gpu": str(gpus)}}}],
        },
        "status": {"phase": phase},
    }


def test_free_gpus_are_allocatable_minus_what_unfinished_pods_request() -> None:
    nodes = [node("h1", H100, 8), node("h2", H100, 8), node("l1", L40S, 4)]
    pods = [pod("h1", 8), pod("h2", 6), pod("l1", 4, phase="Succeeded"), pod("l1", 1)]
    offers = {o.product: o for o in gpu_offers_from_nodes(nodes, pods)}
    assert offers[H100].max_free_gpus_per_node == 2
    assert offers[L40S].max_free_gpus_per_node == 3
    assert gpu_offers_from_nodes(nodes)[0].max_free_gpus_per_node is None


def test_fp8_kv_cache_is_refused_below_compute_capability_8_9() -> None:
    plan = plan_visionmodel(spec(gpuProduct=A100, kvCacheDtype="fp8"))
    assert not plan.feasible
    assert "fp8 KV cache needs compute capability 8.9 or newer" in plan.reason
    assert plan_visionmodel(spec(gpuProduct=L40S, kvCacheDtype="fp8")).feasible


def test_a_model_running_where_gpus_were_free_stays_when_the_cheaper_pool_is_still_full() -> None:
    offers = [offer(L40S, free=0), offer(H100, free=7)]
    first = plan_visionmodel(spec(), gpu_offers=offers)
    previous = first.to_status().model_dump(by_alias=True)
    again = plan_visionmodel(spec(), gpu_offers=offers, previous=previous)
    assert again.gpu_product == H100
    assert again.placement == (
        f"already running there; {L40S}/bf16/tp1 is cheaper but no node of it has 1 free GPU"
    )
