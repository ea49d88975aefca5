"""Compute a VisionModel's status and the events worth telling a user, from what was observed."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from vlm_operator.api.constants import ConditionType, Reason
from vlm_operator.render.labels import selector_string
from vlm_operator.sizing import Plan
from vlm_operator.status.events import Event


@dataclass(frozen=True)
class Observed:
    """What the cluster holds for one VisionModel."""

    deployment: Mapping[str, Any] | None
    """The child Deployment as read back, or None when it does not exist."""

    unschedulable: Sequence[str] = ()
    """Scheduler messages of pods that cannot be placed."""


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
    detail: str = ""
    """For a stalled verdict: what is wrong, without the counts that change while it stays so."""


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


def _placement(plan: Plan) -> str:
    tp = plan.tensor_parallel_size
    return f"{plan.gpus_per_replica}x {plan.gpu_product} ({plan.precision}, tp={tp})"


def judge(
    *,
    desired_replicas: int,
    plan: Plan,
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
        return Verdict(False, stall_reason, plan.reason + kept, stalled=True, detail=plan.reason)
    if blocker is not None:
        return Verdict(False, blocker[0], blocker[1], stalled=True, detail=blocker[1])
    if deployment is None:
        return Verdict(False, Reason.MODEL_LOADING, "Creating the vLLM Deployment.", True)
    deadline = _deadline_exceeded(deployment)
    if deadline is not None:
        return Verdict(
            False, Reason.PROGRESS_DEADLINE_EXCEEDED, deadline, stalled=True, detail=deadline
        )
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
    present = [(ConditionType.READY, "True" if verdict.ready else "False")]
    if verdict.reconciling:
        present.append((ConditionType.RECONCILING, "True"))
    if verdict.stalled:
        present.append((ConditionType.STALLED, "True"))
    return [
        _condition(kind, status, verdict.reason, verdict.message, generation, by_type, now)
        for kind, status in present
    ]


def _plan_identity(plan: Mapping[str, Any] | None) -> tuple[Any, ...] | None:
    if not plan or not plan.get("feasible"):
        return None
    keys = ("gpuProduct", "precision", "tensorParallelSize", "gpusPerReplica", "engineArgs")
    return tuple(
        tuple(plan[key]) if isinstance(plan.get(key), list) else plan.get(key) for key in keys
    )


def plan_events(previous_plan: Mapping[str, Any] | None, plan: Plan) -> list[Event]:
    """PlanChosen or PlanChanged when a feasible plan is new."""
    wire_plan = plan.to_status().model_dump(by_alias=True)
    before, after = _plan_identity(previous_plan), _plan_identity(wire_plan)
    if after is None or before == after:
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
    plan: Plan,
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
        "plan": plan.to_status().model_dump(by_alias=True, mode="json"),
    }
    events = plan_events(previous_status.get("plan"), plan) + stall_events(verdict, previous_status)
    return Outcome(status, events)


def stall_events(verdict: Verdict, previous_status: Mapping[str, Any]) -> list[Event]:
    """A warning each time the VisionModel becomes stalled, or stalled for another reason."""
    if not verdict.stalled:
        return []
    for condition in previous_status.get("conditions", []):
        if (
            condition.get("type") == ConditionType.STALLED
            and condition.get("reason") == verdict.reason
            and str(condition.get("message", "")).startswith(verdict.detail)
        ):
            return []
    return [Event("Warning", verdict.reason, verdict.detail)]


def status_changed(current: Mapping[str, Any], desired: Mapping[str, Any]) -> bool:
    """Whether writing `desired` would change any field of `current` that the reconciler owns."""
    return any(current.get(key) != value for key, value in desired.items())
