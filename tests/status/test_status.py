"""Status, conditions and events computed from the plan and the observed Deployment."""

from typing import Any

from builders import plan
from vlm_operator.status.conditions import (
    Observed,
    Outcome,
    compute_status,
    plan_events,
    status_changed,
)

NOW = "2026-11-22T10:00:00Z"
LATER = "2026-11-22T10:05:00Z"


def deployment(replicas: int, ready: int, updated: int, **extra: Any) -> dict[str, Any]:
    return {
        "metadata": {"generation": 3},
        "status": {
            "observedGeneration": 3,
            "replicas": replicas,
            "readyReplicas": ready,
            "updatedReplicas": updated,
            **extra,
        },
    }


def outcome_for(
    observed: Observed,
    *,
    desired: int = 2,
    stall_reason: str | None = None,
    previous: dict[str, Any] | None = None,
    now: str = NOW,
    **plan_overrides: Any,
) -> Outcome:
    return compute_status(
        name="qwen-vl",
        namespace="team-a",
        generation=7,
        desired_replicas=desired,
        service_port=8000,
        plan=plan(**plan_overrides),
        stall_reason=stall_reason,
        observed=observed,
        previous_status=previous or {},
        now=now,
    )


def status_for(observed: Observed, **options: Any) -> dict[str, Any]:
    return outcome_for(observed, **options).status


def conditions(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["type"]: item for item in status["conditions"]}


def test_serving_when_all_replicas_are_ready() -> None:
    status = status_for(Observed(deployment(2, 2, 2)))
    found = conditions(status)
    assert set(found) == {"Ready"}
    assert found["Ready"]["status"] == "True"
    assert found["Ready"]["reason"] == "ModelServing"
    assert found["Ready"]["observedGeneration"] == 7
    assert status["observedGeneration"] == 7
    assert status["replicas"] == 2
    assert status["readyReplicas"] == 2
    assert status["endpoint"] == "http://qwen-vl.team-a.svc:8000/v1"
    assert status["selector"] == "app.kubernetes.io/name=vllm,vlm-operator.io/visionmodel=qwen-vl"


def test_loading_before_the_deployment_exists() -> None:
    found = conditions(status_for(Observed(None)))
    assert found["Ready"]["status"] == "False"
    assert found["Reconciling"]["reason"] == "ModelLoading"
    assert "Stalled" not in found


def test_rolling_update_while_old_replicas_serve() -> None:
    found = conditions(status_for(Observed(deployment(3, 2, 1))))
    assert found["Ready"]["reason"] == "RollingUpdate"
    assert found["Reconciling"]["status"] == "True"


def test_unschedulable_pods_are_explained() -> None:
    observed = Observed(
        deployment(1, 0, 1), ["0/5 nodes are available: 5 Insufficient nvidia.com/gpu."]
    )
    message = conditions(status_for(observed, desired=1))["Ready"]["message"]
    assert "Waiting for GPUs: 1 pod(s) unschedulable" in message
    assert "Insufficient nvidia.com/gpu" in message


def test_infeasible_plan_stalls_and_says_the_deployment_is_kept() -> None:
    status = status_for(
        Observed(deployment(2, 2, 2)),
        stall_reason="InsufficientGPUMemory",
        feasible=False,
        reason="needs 3 GPUs of NVIDIA-L40S; allow maxGpusPerReplica 4 or use fp8",
    )
    found = conditions(status)
    assert found["Stalled"]["status"] == "True"
    assert found["Stalled"]["reason"] == "InsufficientGPUMemory"
    assert found["Ready"]["status"] == "False"
    assert "use fp8" in found["Ready"]["message"]
    assert "running Deployment is unchanged and has 2 ready" in found["Ready"]["message"]
    assert "Reconciling" not in found


def test_progress_deadline_stalls() -> None:
    stuck = deployment(
        1,
        0,
        1,
        conditions=[
            {"type": "Progressing", "reason": "ProgressDeadlineExceeded", "message": "too slow"}
        ],
    )
    found = conditions(status_for(Observed(stuck), desired=1))
    assert found["Stalled"]["reason"] == "ProgressDeadlineExceeded"


def test_scaled_to_zero_is_ready() -> None:
    found = conditions(status_for(Observed(deployment(0, 0, 0)), desired=0))
    assert found["Ready"]["status"] == "True"
    assert found["Ready"]["reason"] == "ScaledToZero"


def test_transition_time_kept_while_status_is_unchanged() -> None:
    first = status_for(Observed(deployment(2, 2, 2)), now=NOW)
    again = status_for(Observed(deployment(2, 2, 2)), previous=first, now=LATER)
    assert conditions(again)["Ready"]["lastTransitionTime"] == NOW
    assert not status_changed(first, again)
    flipped = status_for(Observed(deployment(2, 1, 2)), previous=first, now=LATER)
    assert conditions(flipped)["Ready"]["lastTransitionTime"] == LATER
    assert status_changed(first, flipped)


def test_status_changed_ignores_fields_owned_by_others() -> None:
    current = {**status_for(Observed(deployment(2, 2, 2))), "autoscaling": {"desiredReplicas": 3}}
    desired = status_for(Observed(deployment(2, 2, 2)), previous=current)
    assert not status_changed(current, desired)


def test_plan_events() -> None:
    first = plan()
    chosen = plan_events(None, first)
    assert [(e.type, e.reason) for e in chosen] == [("Normal", "PlanChosen")]
    same = plan_events(first.to_status().model_dump(by_alias=True), first)
    assert same == []
    bigger = plan(gpus_per_replica=2, tensor_parallel_size=2)
    changed = plan_events(first.to_status().model_dump(by_alias=True), bigger)
    assert [e.reason for e in changed] == ["PlanChanged"]
    assert "2x NVIDIA-H100-80GB-HBM3" in changed[0].message


def test_infeasible_plan_warns_once() -> None:
    serving = status_for(Observed(deployment(2, 2, 2)))
    first = outcome_for(
        Observed(deployment(2, 2, 2)),
        stall_reason="InsufficientGPUMemory",
        previous=serving,
        feasible=False,
        reason="does not fit",
    )
    warned = first.events
    assert [(e.type, e.reason) for e in warned] == [("Warning", "InsufficientGPUMemory")]
    # Still stalled for the same reason, with one replica fewer ready: no second warning.
    again = outcome_for(
        Observed(deployment(2, 1, 2)),
        stall_reason="InsufficientGPUMemory",
        previous=first.status,
        feasible=False,
        reason="does not fit",
    )
    assert again.events == []
