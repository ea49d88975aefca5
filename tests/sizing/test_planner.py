"""The planner: candidate choice, pins, constraints, cluster offers and infeasible answers."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from vlm_operator.api.v1alpha1 import PlanStatus, VisionModelSpec
from vlm_operator.catalog.architectures import catalog_model_ids
from vlm_operator.catalog.gpus import GpuOffer
from vlm_operator.sizing import Plan, plan_visionmodel

H100 = "NVIDIA-H100-80GB-HBM3"


def make_spec(model_id: str = "Qwen/Qwen2.5-VL-7B-Instruct", **sections: Any) -> VisionModelSpec:
    """A spec for the model; keyword arguments are spec sections in wire names."""
    body: dict[str, Any] = {"model": {"id": model_id}}
    for section, values in sections.items():
        body.setdefault(section, {}).update(values)
    return VisionModelSpec.model_validate(body)


def flag(plan: Plan, name: str) -> str:
    """The value following a flag in the engine arguments."""
    return plan.engine_args[plan.engine_args.index(name) + 1]


def test_single_gpu_plan_on_h100() -> None:
    spec = make_spec(
        workload={"maxImagesPerRequest": 4},
        hardware={"gpuProduct": H100},
        engine={"extraArgs": ["--enable-prefix-caching"]},
    )
    plan = plan_visionmodel(spec)
    assert plan.feasible, plan.reason
    assert (plan.gpu_product, plan.precision, plan.gpus_per_replica) == (H100, "bf16", 1)
    assert plan.stall_reason is None
    assert plan.tokens_per_image == 2118  # 1288x1288 -> 46x46 tokens + 2 wrappers
    assert plan.max_model_len == 9728  # 512 + 4 x 2118 + 512, rounded up to 256
    assert plan.to_status().memory_gib.weights == plan.weights_gib
    assert plan.engine_args[:3] == ["Qwen/Qwen2.5-VL-7B-Instruct", "--port", "8000"]
    assert flag(plan, "--served-model-name") == "Qwen/Qwen2.5-VL-7B-Instruct"
    assert flag(plan, "--gpu-memory-utilization") == "0.92"
    assert flag(plan, "--max-num-batched-tokens") == "8192"
    assert json.loads(flag(plan, "--limit-mm-per-prompt")) == {
        "image": {"count": 4, "width": 1280, "height": 1280},
        "video": 0,
    }
    assert json.loads(flag(plan, "--mm-processor-kwargs")) == {"max_pixels": 1288 * 1288}
    assert "--enable-prefix-caching" not in plan.engine_args
    assert "--revision" not in plan.engine_args


def test_memory_adds_up_to_the_budget() -> None:
    plan = plan_visionmodel(make_spec(hardware={"gpuProduct": H100}))
    parts = (
        plan.weights_gib
        + plan.activation_gib
        + plan.cuda_graphs_gib
        + plan.overhead_gib
        + plan.kv_cache_gib
    )
    assert parts == pytest.approx(plan.budget_gib, abs=0.05)
    assert plan.budget_gib == pytest.approx(79.18 * 0.92, abs=0.01)


def test_fewest_gpus_then_higher_precision() -> None:
    plan = plan_visionmodel(
        make_spec("Qwen/Qwen2.5-VL-72B-Instruct", hardware={"gpuProduct": H100})
    )
    assert plan.feasible, plan.reason
    assert (plan.gpus_per_replica, plan.precision) == (2, "fp8")
    assert flag(plan, "--quantization") == "fp8"
    assert f"{H100}/bf16/tp2" in dict(plan.rejected)


def test_pins_evaluate_only_the_pinned_candidate() -> None:
    spec = make_spec(
        "Qwen/Qwen2.5-VL-72B-Instruct",
        hardware={"gpuProduct": H100, "precision": "bf16", "tensorParallelSize": 1},
    )
    plan = plan_visionmodel(spec)
    assert not plan.feasible
    assert plan.stall_reason == "InsufficientGPUMemory"
    assert [candidate for candidate, _ in plan.rejected] == [f"{H100}/bf16/tp1"]
    assert plan.weights_gib == pytest.approx(136.7 * 1.02, rel=0.01)
    assert (plan.tensor_parallel_size, plan.precision) == (1, "bf16")
    assert "Would fit with 4 GPUs per replica" in plan.reason
    assert "hardware.tensorParallelSize 4" in plan.reason
    assert "an AWQ int4 checkpoint with" in plan.reason
    assert plan.engine_args[0] == "Qwen/Qwen2.5-VL-72B-Instruct"


@pytest.mark.parametrize(
    ("hardware", "model", "checkpoint", "feasible", "fragment"),
    [
        ({"gpuProduct": "Tesla-T4"}, "Qwen/Qwen2-VL-2B-Instruct", "none", True, ""),
        ({"gpuProduct": "Tesla-T4", "precision": "bf16"}, "Qwen/Qwen2-VL-2B-Instruct", "none",
         False, "bf16 needs compute capability 8.0"),
        ({"gpuProduct": "NVIDIA-A100-SXM4-80GB", "precision": "fp8"},
         "Qwen/Qwen2-VL-2B-Instruct", "none", False, "fp8 needs compute capability 8.9"),
        ({"gpuProduct": "NVIDIA-A100-SXM4-80GB"}, "Qwen/Qwen2-VL-2B-Instruct", "fp8", True, ""),
        ({"gpuProduct": "NVIDIA-L4", "precision": "awq"}, "Qwen/Qwen2.5-VL-7B-Instruct",
         "none", False, "needs a awq-quantized checkpoint"),
        ({"gpuProduct": "NVIDIA-L4"}, "Qwen/Qwen2.5-VL-7B-Instruct", "awq", True, ""),
        ({"gpuProduct": H100, "tensorParallelSize": 3}, "Qwen/Qwen2.5-VL-7B-Instruct", "none",
         False, "not divisible by tensor parallel size"),
    ],
)  # fmt: skip
def test_constraints(
    hardware: dict[str, Any], model: str, checkpoint: str, feasible: bool, fragment: str
) -> None:
    spec = make_spec(model, hardware=hardware, model={"checkpointQuantization": checkpoint})
    plan = plan_visionmodel(spec)
    assert plan.feasible is feasible, plan.reason
    assert fragment in plan.reason
    if not feasible and fragment.startswith(("bf16", "fp8 needs", "needs a")):
        assert plan.stall_reason == "InvalidSpec"


def test_t4_runs_fp16_and_quantized_checkpoints_keep_their_method() -> None:
    t4 = plan_visionmodel(
        make_spec("Qwen/Qwen2-VL-2B-Instruct", hardware={"gpuProduct": "Tesla-T4"})
    )
    assert (t4.precision, flag(t4, "--dtype")) == ("fp16", "float16")
    awq = plan_visionmodel(
        make_spec(hardware={"gpuProduct": "NVIDIA-L4"}, model={"checkpointQuantization": "awq"})
    )
    assert awq.precision == "awq"
    assert "--quantization" not in awq.engine_args  # vLLM reads it from the checkpoint


@pytest.mark.parametrize(
    ("model_id", "fragment"),
    [
        ("acme/unknown-vlm", "spec.model.architecture"),
        ("meta-llama/Llama-3.2-11B-Vision-Instruct", "vLLM 0.6.2 to 0.10.2"),
    ],
)
def test_unsupported_models(model_id: str, fragment: str) -> None:
    plan = plan_visionmodel(make_spec(model_id))
    assert (plan.feasible, plan.stall_reason) == (False, "UnsupportedModel")
    assert fragment in plan.reason
    assert plan.engine_args == []


def test_model_described_by_config_json() -> None:
    config = {
        "architectures": ["Qwen2_5_VLForConditionalGeneration"],
        "hidden_size": 2048, "intermediate_size": 11008, "num_attention_heads": 16,
        "num_hidden_layers": 36, "num_key_value_heads": 2, "vocab_size": 151936,
        "max_position_embeddings": 128000, "tie_word_embeddings": True,
    }  # fmt: skip
    spec = make_spec("acme/qwen-vl-3b-finetune", hardware={"gpuProduct": "NVIDIA-L4"})
    plan = plan_visionmodel(spec, architecture_config=config)
    assert plan.feasible, plan.reason
    assert plan.engine_args[0] == "acme/qwen-vl-3b-finetune"


@pytest.mark.parametrize(
    ("sections", "fragment"),
    [
        ({"model": {"id": "google/gemma-3-4b-it"}, "workload": {"maxVideosPerRequest": 1}},
         "takes no video"),
        ({"engine": {"maxModelLen": 200000}}, "exceeds the 128000-token context"),
        ({"model": {"id": "deepseek-ai/deepseek-vl2"}, "workload": {"maxImagesPerRequest": 8}},
         "exceeds the 4096-token context"),
        ({"hardware": {"gpuProduct": "ACME-X1"}}, "not in the GPU catalog"),
    ],
)  # fmt: skip
def test_invalid_specs(sections: dict[str, Any], fragment: str) -> None:
    model_id = sections.pop("model", {}).get("id", "Qwen/Qwen2.5-VL-7B-Instruct")
    plan = plan_visionmodel(make_spec(model_id, **sections))
    assert (plan.feasible, plan.stall_reason) == (False, "InvalidSpec")
    assert fragment in plan.reason


def test_offers_limit_products_and_node_sizes() -> None:
    offers = [GpuOffer("NVIDIA-L4", None, None, 1), GpuOffer("NVIDIA-A10G", None, None, 1)]
    small = plan_visionmodel(make_spec(), gpu_offers=offers)
    assert small.feasible, small.reason
    assert small.gpu_product in ("NVIDIA-L4", "NVIDIA-A10G")
    big = plan_visionmodel(make_spec("Qwen/Qwen2.5-VL-32B-Instruct"), gpu_offers=offers)
    assert (big.feasible, big.stall_reason) == (False, "NoMatchingGPUNodes")
    assert "no schedulable node has" in big.reason


def test_pinned_product_not_offered() -> None:
    offers = [GpuOffer("NVIDIA-L4", None, None, 8)]
    plan = plan_visionmodel(make_spec(hardware={"gpuProduct": H100}), gpu_offers=offers)
    assert (plan.feasible, plan.stall_reason) == (False, "NoMatchingGPUNodes")
    assert "NVIDIA-L4" in plan.reason
    assert plan_visionmodel(make_spec(), gpu_offers=[]).stall_reason == "NoMatchingGPUNodes"


def test_unknown_offered_product_is_planned_from_its_labels() -> None:
    offers = [GpuOffer("NVIDIA-A40", 46068, (8, 6), 4)]
    plan = plan_visionmodel(make_spec(), gpu_offers=offers)
    assert plan.feasible, plan.reason
    assert (plan.gpu_product, plan.precision) == ("NVIDIA-A40", "bf16")


def test_utilization_that_leaves_no_room_for_the_cuda_context() -> None:
    spec = make_spec(
        "Qwen/Qwen2-VL-2B-Instruct",
        hardware={"gpuProduct": "Tesla-T4"},
        engine={"gpuMemoryUtilizationPercent": 99},
    )
    plan = plan_visionmodel(spec)
    assert not plan.feasible
    assert "vLLM would refuse to start" in plan.reason


@pytest.mark.parametrize(
    ("sections", "fragment"),
    [
        ({"hardware": {"gpuProduct": "NVIDIA-L4", "maxGpusPerReplica": 1},
          "workload": {"concurrency": 64}}, "hardware.maxGpusPerReplica"),
        ({"hardware": {"gpuProduct": "NVIDIA-L4", "maxGpusPerReplica": 1, "precision": "bf16"},
          "workload": {"concurrency": 40}}, "hardware.precision fp8"),
        ({"model": {"id": "Qwen/Qwen2-VL-2B-Instruct"},
          "hardware": {"gpuProduct": "Tesla-T4", "maxGpusPerReplica": 1},
          "workload": {"maxImagesPerRequest": 8, "concurrency": 32}},
         "workload.maxImagesPerRequest"),
    ],
)  # fmt: skip
def test_infeasible_answers_name_a_change_that_fits(
    sections: dict[str, Any], fragment: str
) -> None:
    model_id = sections.pop("model", {}).get("id", "Qwen/Qwen2.5-VL-7B-Instruct")
    plan = plan_visionmodel(make_spec(model_id, **sections))
    assert not plan.feasible
    assert "Would fit with" in plan.reason
    assert fragment in plan.reason


def test_fp8_kv_cache_doubles_the_tokens() -> None:
    base = plan_visionmodel(make_spec(hardware={"gpuProduct": H100}))
    fp8 = plan_visionmodel(make_spec(hardware={"gpuProduct": H100, "kvCacheDtype": "fp8"}))
    assert flag(fp8, "--kv-cache-dtype") == "fp8"
    assert fp8.kv_cache_tokens == pytest.approx(2 * base.kv_cache_tokens, rel=0.001)


def test_text_only_workload_turns_multimodal_profiling_off() -> None:
    plan = plan_visionmodel(make_spec(workload={"maxImagesPerRequest": 0}))
    assert json.loads(flag(plan, "--limit-mm-per-prompt")) == {"image": 0, "video": 0}
    assert "--mm-processor-kwargs" not in plan.engine_args


def test_video_workload() -> None:
    spec = make_spec(
        workload={"maxVideosPerRequest": 1, "maxVideoFrames": 16},
        hardware={"gpuProduct": H100},
    )
    plan = plan_visionmodel(spec)
    assert plan.feasible, plan.reason
    assert json.loads(flag(plan, "--limit-mm-per-prompt"))["video"] == {
        "count": 1, "num_frames": 16, "width": 1280, "height": 1280,
    }  # fmt: skip


def test_revision_and_served_name() -> None:
    spec = make_spec(model={"revision": "abc123", "servedName": "vision"})
    plan = plan_visionmodel(spec)
    assert (flag(plan, "--revision"), flag(plan, "--served-model-name")) == ("abc123", "vision")


def test_plans_are_deterministic_and_valid_status() -> None:
    offers = [GpuOffer(p, None, None, 8) for p in ("NVIDIA-L4", H100, "NVIDIA-A10G")]
    spec = make_spec("Qwen/Qwen2.5-VL-32B-Instruct")
    first = plan_visionmodel(spec, gpu_offers=offers)
    shuffled = offers[:]
    random.Random(7).shuffle(shuffled)
    assert plan_visionmodel(spec, gpu_offers=shuffled) == first
    status = first.to_status()
    assert PlanStatus.model_validate(status.model_dump(by_alias=True)) == status


@pytest.mark.parametrize("model_id", catalog_model_ids())
def test_every_catalog_model_gets_an_answer(model_id: str) -> None:
    plan = plan_visionmodel(make_spec(model_id))
    assert plan.feasible or plan.stall_reason == "UnsupportedModel", plan.reason
    plan.to_status()
