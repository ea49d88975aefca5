"""The operator's per-VisionModel series: one plan series and one Stalled series at a time, and
nothing left once a VisionModel is forgotten."""

from __future__ import annotations

from prometheus_client import REGISTRY

from vlm_operator.api.constants import Reason
from vlm_operator.api.v1alpha1 import VisionModelSpec
from vlm_operator.controllers import metrics
from vlm_operator.sizing import plan_visionmodel, refused_plan

WHO = {"namespace": "team-a", "visionmodel": "qwen-vl"}
H100 = "NVIDIA-H100-80GB-HBM3"


def value(name: str, **labels: str) -> float | None:
    result: float | None = REGISTRY.get_sample_value(name, {**WHO, **labels})
    return result


def series(name: str) -> list[dict[str, str]]:
    return [
        sample.labels
        for family in REGISTRY.collect()
        for sample in family.samples
        if sample.name == name and sample.labels.get("visionmodel") == "qwen-vl"
    ]


def test_a_stalled_then_serving_visionmodel() -> None:
    refused = refused_plan(Reason.INVALID_SPEC, "spec.model.id: bad")
    metrics.record_visionmodel(
        "team-a", "qwen-vl", plan=refused, desired=2, ready=0, warm=None, maximum=None,
        stalled_reason="InvalidSpec",
    )  # fmt: skip
    assert value("vlm_operator_stalled", reason="InvalidSpec") == 1
    assert value("vlm_operator_planned_gpus_per_replica") == 0
    assert series("vlm_operator_plan_info") == []
    assert series("vlm_operator_max_replicas") == []

    spec = VisionModelSpec.model_validate(
        {"model": {"id": "Qwen/Qwen2.5-VL-7B-Instruct"}, "hardware": {"gpuProduct": H100}}
    )
    plan = plan_visionmodel(spec)
    assert plan.feasible
    metrics.record_visionmodel(
        "team-a", "qwen-vl", plan=plan, desired=2, ready=1, warm=1, maximum=4, stalled_reason=None
    )
    assert series("vlm_operator_stalled") == []
    assert series("vlm_operator_plan_info") == [
        {**WHO, "gpu_product": H100, "precision": plan.precision, "tensor_parallel_size": "1"}
    ]
    assert value("vlm_operator_ready_replicas") == 1
    assert value("vlm_operator_warm_replicas") == 1
    assert value("vlm_operator_max_replicas") == 4

    metrics.forget_visionmodel("team-a", "qwen-vl")
    for family in REGISTRY.collect():
        assert all(sample.labels.get("visionmodel") != "qwen-vl" for sample in family.samples)
