"""Compute a VisionModel's status and the events worth telling a user, from what was observed."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from vlm_operator.api.constants import ConditionType, Reason
from vlm_operator.api.v1alpha1 import PlanStatus
from vlm_operator.render.labels import selector_string


@dataclass(frozen=True)
class Observed:
    """What the cluster holds for one VisionModel."""

    deployment: Mapping[str, Any] | None
    """The child Deployment as read back, or None when it does not exist."""

    unschedulable: Sequence[str] = ()
    """Scheduler messages of pods that cannot be placed."""


@dataclass(frozen=True)
class Event:
    """An event to post on the VisionModel."""

    type: str
    reason: str
    message: str


@dataclass(frozen=True)
class Outcome:
    """The new status, and the events that the change from the previous status deserves."""

    status: dict[str, Any]
    events: list[Event] = field(default_factory=list)


@dataclass(frozen=True)
class Verdict:
    """The state of the conditions before timestamps are attached."""

    ready: bool
    reason: str
    message: str
    reconciling: bool = False
    stalled: bool = False


def endpoint_url(name: str, namespace: str, port: int) -> str:
    """The in-cluster OpenAI-compatible base URL."""
    return f"http://{name}.{namespace}.svc:{port}/v1"


def _deployment_counts(deployment: Mapping[str, Any] | None) -> tuple[int, int, int]:
    status = (deployment or {}).get("status", {})
    return (
        int(status.get("replicas", 0)),
        int(status.get("readyReplicas", 0)),
        int(status.get("updatedReplicas", 0)),
    )


def _deadline_exceeded(deployment: Mapping[str, Any]) -> str | None:
    for condition in deployment.get("status", {}).get("conditions", []):
        if condition.get("type") == "Progressing" and condition.get("reason") == (
            Reason.PROGRESS_DEADLINE_EXCEEDED
        ):
            return str(condition.get("message", "the rollout exceeded its progress deadline"))
    return None


def _placement(plan: PlanStatus) -> str:
    tp = plan.tensor_parallel_size
    return f"{plan.gpus_per_replica}x {plan.gpu_product} ({plan.precision}, tp={tp})"


def judge(
    *,
    desired_replicas: int,
    plan: PlanStatus,
    stall_reason: str | None,
    observed: Observed,
    blocker: tuple[str, str] | None = None,
) -> Verdict:
    """Decide Ready, Reconciling and Stalled from the plan and the observed Deployment.

    A blocker is a problem outside the plan (such as a missing autoscaler) that needs the
    user even though the workload itself was applied."""
    deployment = observed.deployment
    replicas, ready, updated = _deployment_counts(deployment)
    if stall_reason is not None:
        kept = (
            f" The running Deployment is unchanged and has {ready} ready replica(s)."
            if deployment is not None
            else ""
        )
        return Verdict(False, stall_reason, plan.reason + kept, stalled=True)
    if blocker is not None:
        return Verdict(False, blocker[0], blocker[1], stalled=True)
    if deployment is None:
        return Verdict(False, Reason.MODEL_LOADING, "Creating the vLLM Deployment.", True)
    deadline = _deadline_exceeded(deployment)
    if deadline is not None:
        return Verdict(False, Reason.PROGRESS_DEADLINE_EXCEEDED, deadline, stalled=True)
    generation_seen = deployment.get("status", {}).get("observedGeneration", 0) >= deployment.get(
        "metadata", {}
    ).get("generation", 0)
    settled = (
        generation_seen
        and updated == desired_replicas
        and ready == desired_replicas
        and replicas == desired_replicas
    )
    if settled and desired_replicas == 0:
        return Verdict(True, Reason.SCALED_TO_ZERO, "Scaled to zero replicas.")
    if settled:
        return Verdict(
            True,
            Reason.MODEL_SERVING,
            f"{ready}/{desired_replicas} replicas serving on {_placement(plan)}.",
        )
    reason = Reason.ROLLING_UPDATE if ready > 0 else Reason.MODEL_LOADING
    message = (
        f"{ready}/{desired_replicas} replicas ready, {updated} updated, on {_placement(plan)}."
    )
    if observed.unschedulable:
        message += f" Waiting for GPUs: {len(observed.unschedulable)} pod(s) unschedulable: "
        message += observed.unschedulable[0]
    return Verdict(False, reason, message, reconciling=True)


def _condition(
    condition_type: str,
    status: str,
    reason: str,
    message: str,
    generation: int,
    previous: Mapping[str, Mapping[str, Any]],
    now: str,
) -> dict[str, Any]:
    earlier = previous.get(condition_type)
    unchanged = earlier is not None and earlier.get("status") == status
    return {
        "type": condition_type,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": str(earlier["lastTransitionTime"]) if unchanged and earlier else now,
        "observedGeneration": generation,
    }


def conditions_for(
    verdict: Verdict, generation: int, previous: Sequence[Mapping[str, Any]], now: str
) -> list[dict[str, Any]]:
    """The whole conditions list: Ready always; Reconciling and Stalled only while true."""
    by_type = {str(item.get("type")): item for item in previous}
    ready_status = "True" if verdict.ready else "False"
    conditions = [
        _condition(
            ConditionType.READY,
            ready_status,
            verdict.reason,
            verdict.message,
            generation,
            by_type,
            now,
        )
    ]
    if verdict.reconciling:
        conditions.append(
            _condition(
                ConditionType.RECONCILING,
                "True",
                verdict.reason,
                verdict.message,
                generation,
                by_type,
                now,
            )
        )
    if verdict.stalled:
        conditions.append(
            _condition(
                ConditionType.STALLED,
                "True",
                verdict.reason,
                verdict.message,
                generation,
                by_type,
                now,
            )
        )
    return conditions


def _plan_identity(plan: Mapping[str, Any] | None) -> tuple[Any, ...] | None:
    if not plan or not plan.get("feasible"):
        return None
    keys = ("gpuProduct", "precision", "tensorParallelSize", "gpusPerReplica", "engineArgs")
    return tuple(
        tuple(plan[key]) if isinstance(plan.get(key), list) else plan.get(key) for key in keys
    )


def plan_events(
    previous_plan: Mapping[str, Any] | None, plan: PlanStatus, stall_reason: str | None
) -> list[Event]:
    """PlanChosen or PlanChanged when a feasible plan is new; a warning when it cannot fit."""
    new_plan = plan.model_dump(by_alias=True)
    if stall_reason is not None:
        previous_reason = (previous_plan or {}).get("reason")
        if previous_reason == plan.reason and not (previous_plan or {}).get("feasible", True):
            return []
        return [Event("Warning", stall_reason, plan.reason)]
    before, after = _plan_identity(previous_plan), _plan_identity(new_plan)
    if before == after:
        return []
    summary = (
        f"{_placement(plan)}, max-model-len {plan.max_model_len}, "
        f"max-num-seqs {plan.max_num_seqs}, KV cache {plan.kv_cache_tokens} tokens"
    )
    if before is None:
        return [Event("Normal", Reason.PLAN_CHOSEN, f"Plan: {summary}.")]
    return [Event("Normal", Reason.PLAN_CHANGED, f"Plan changed to {summary}.")]


def compute_status(
    *,
    name: str,
    namespace: str,
    generation: int,
    desired_replicas: int,
    service_port: int,
    plan: PlanStatus,
    stall_reason: str | None,
    observed: Observed,
    previous_status: Mapping[str, Any],
    now: str,
    blocker: tuple[str, str] | None = None,
) -> Outcome:
    """The status the reconciler owns (everything but autoscaling), and the events to post."""
    verdict = judge(
        desired_replicas=desired_replicas,
        plan=plan,
        stall_reason=stall_reason,
        observed=observed,
        blocker=blocker,
    )
    replicas, ready, _ = _deployment_counts(observed.deployment)
    status = {
        "observedGeneration": generation,
        "conditions": conditions_for(
            verdict, generation, previous_status.get("conditions", []), now
        ),
        "replicas": replicas,
        "readyReplicas": ready,
        "selector": selector_string(name),
        "endpoint": endpoint_url(name, namespace, service_port),
        "plan": plan.model_dump(by_alias=True, mode="json"),
    }
    events = plan_events(previous_status.get("plan"), plan, stall_reason)
    if blocker is not None and _stalled_reason(previous_status) != blocker[0]:
        events.append(Event("Warning", blocker[0], blocker[1]))
    return Outcome(status, events)


def _stalled_reason(status: Mapping[str, Any]) -> str | None:
    for condition in status.get("conditions", []):
        if condition.get("type") == ConditionType.STALLED and condition.get("status") == "True":
            return str(condition.get("reason"))
    return None


def status_changed(current: Mapping[str, Any], desired: Mapping[str, Any]) -> bool:
    """Whether writing `desired` would change any field of `current` that the reconciler owns."""
    return any(current.get(key) != value for key, value in desired.items())
