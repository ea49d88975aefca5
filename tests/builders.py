"""Builders for VisionModel specs and plans used across the fast tests."""

from __future__ import annotations

from typing import Any

from vlm_operator.api.v1alpha1 import VisionModelSpec
from vlm_operator.sizing import Plan


def spec(**overrides: Any) -> VisionModelSpec:
    """A Qwen2.5-VL-7B spec; keyword arguments replace top-level spec sections (wire names)."""
    body: dict[str, Any] = {
        "model": {"id": "Qwen/Qwen2.5-VL-7B-Instruct"},
        "workload": {"maxImagesPerRequest": 4},
        "replicas": 2,
    }
    body.update(overrides)
    return VisionModelSpec.model_validate(body)


def plan(**overrides: Any) -> Plan:
    """A feasible single-GPU H100 plan with fixed figures."""
    values: dict[str, Any] = {
        "feasible": True,
        "reason": "",
        "stall_reason": None,
        "gpu_product": "NVIDIA-H100-80GB-HBM3",
        "precision": "bf16",
        "tensor_parallel_size": 1,
        "gpus_per_replica": 1,
        "max_model_len": 8192,
        "max_num_seqs": 16,
        "gpu_memory_utilization": 0.92,
        "tokens_per_image": 2091,
        "kv_cache_tokens": 880000,
        "weights_gib": 15.4,
        "vision_gib": 1.3,
        "activation_gib": 4.1,
        "cuda_graphs_gib": 0.6,
        "overhead_gib": 0.8,
        "kv_cache_gib": 51.9,
        "budget_gib": 72.8,
        "engine_args": ["Qwen/Qwen2.5-VL-7B-Instruct", "--port", "8000"],
    }
    values.update(overrides)
    return Plan(**values)
