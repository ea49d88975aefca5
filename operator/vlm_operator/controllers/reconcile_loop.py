"""The reconcile loop: spec -> plan -> desired children -> apply -> observed -> status."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from vlm_operator.api.config import OperatorConfig
from vlm_operator.api.constants import Reason
from vlm_operator.api.v1alpha1 import ScalingSpec, ServiceSpec, VisionModelSpec
from vlm_operator.controllers import metrics
from vlm_operator.controllers.clock import utc_now
from vlm_operator.controllers.planning import SpecError, check_engine_policy, plan_for
from vlm_operator.controllers.state import Memory
from vlm_operator.k8s.cluster import Cluster
from vlm_operator.render.autoscaling import (
    KEDA_CRD,
    render_horizontal_pod_autoscaler,
    render_scaled_object,
)
from vlm_operator.render.labels import name_conflict, selector_string
from vlm_operator.render.workload import RenderInput, render_children
from vlm_operator.sizing import refused_plan
from vlm_operator.status.conditions import Observed, compute_status, status_changed
from vlm_operator.status.events import EventSink

POD_MONITOR_CRD = "podmonitors.monitoring.coreos.com"


def _owned_by(body: Mapping[str, Any] | None, uid: str) -> bool:
    references = (body or {}).get("metadata", {}).get("ownerReferences", [])
    return any(reference.get("uid") == uid for reference in references)


def _foreign_object(
    cluster: Cluster, source: RenderInput, children: list[dict[str, Any]]
) -> str | None:
    """The first object under a child's name that this VisionModel did not create, or None."""
    scaling = source.spec.scaling
    driver = scaling.driver if scaling is not None else None
    manifests = list(children)
    if driver == "hpa":
        manifests.append(render_horizontal_pod_autoscaler(source))
    elif driver == "keda" and cluster.has_crd(KEDA_CRD):
        manifests.append(render_scaled_object(source))
    for manifest in manifests:
        kind, name = manifest["kind"], manifest["metadata"]["name"]
        if name_conflict(
            cluster.get(manifest["apiVersion"], kind, source.namespace, name), source.uid
        ):
            return (
                f"{kind} {source.namespace}/{name} exists and was not created by this "
                "VisionModel; the operator neither changes nor adopts it. Rename the "
                f"VisionModel or remove the {kind}."
            )
    return None


def _apply_scaling_driver(cluster: Cluster, source: RenderInput) -> tuple[str, str] | None:
    """Keep exactly one writer of spec.replicas: apply the chosen driver's object, delete the
    other's. Returns a (reason, message) blocker when the chosen driver is not installed."""
    scaling = source.spec.scaling
    driver = scaling.driver if scaling is not None else None
    keda_installed = cluster.has_crd(KEDA_CRD)
    blocker = None
    if driver == "keda":
        if keda_installed:
            cluster.apply(render_scaled_object(source))
        else:
            blocker = (
                Reason.AUTOSCALER_UNAVAILABLE,
                "spec.scaling.driver is keda, but KEDA's ScaledObject kind "
                f"({KEDA_CRD}) is not installed; replicas stay as spec.replicas says.",
            )
    elif driver == "hpa":
        cluster.apply(render_horizontal_pod_autoscaler(source))
    stale = [("autoscaling/v2", "HorizontalPodAutoscaler")] if driver != "hpa" else []
    if driver != "keda" and keda_installed:
        stale.append(("keda.sh/v1alpha1", "ScaledObject"))
    for api_version, kind in stale:
        if _owned_by(cluster.get(api_version, kind, source.namespace, source.name), source.uid):
            cluster.delete(api_version, kind, source.namespace, source.name)
    return blocker


def reconcile(
    cluster: Cluster,
    config: OperatorConfig,
    memory: Memory,
    namespace: str,
    name: str,
    post_event: EventSink,
) -> None:
    """Bring one VisionModel's children and status in line with its spec. Idempotent."""
    started = time.monotonic()
    with memory.of(namespace, name).lock:
        try:
            _reconcile_locked(cluster, config, namespace, name, post_event)
        except Exception as error:
            metrics.RECONCILE_ERRORS.labels(type(error).__name__).inc()
            metrics.RECONCILES.labels("error").inc()
            raise
        finally:
            metrics.RECONCILE_SECONDS.observe(time.monotonic() - started)
    metrics.RECONCILES.labels("ok").inc()


def _reconcile_locked(
    cluster: Cluster,
    config: OperatorConfig,
    namespace: str,
    name: str,
    post_event: EventSink,
) -> None:
    body = cluster.get_visionmodel(namespace, name)
    if body is None:
        return
    generation = int(body["metadata"].get("generation", 0))
    previous_status: Mapping[str, Any] = body.get("status") or {}
    raw_spec = body.get("spec", {})
    desired_replicas = int(raw_spec.get("replicas", 1))
    # Read before validation so that even an invalid spec gets a status with its endpoint.
    service_port = int(raw_spec.get("service", {}).get("port", ServiceSpec().port))

    stall_reason: str | None
    blocker: tuple[str, str] | None = None
    scaling: ScalingSpec | None = None
    try:
        spec = VisionModelSpec.model_validate(raw_spec)
        scaling = spec.scaling
        check_engine_policy(spec, config)
        plan = plan_for(
            cluster,
            namespace,
            spec,
            name=name,
            previous=previous_status.get("plan"),
            gpu_costs=config.gpu_costs,
        )
    except (ValidationError, SpecError) as error:
        stall_reason = Reason.INVALID_SPEC
        plan = refused_plan(Reason.INVALID_SPEC, str(error).replace("\n", " "))
    else:
        stall_reason = None if plan.feasible else (plan.stall_reason or Reason.INVALID_SPEC)
        if plan.feasible:
            source = RenderInput(name, namespace, body["metadata"]["uid"], spec, plan, config)
            children = render_children(source, pod_monitor=cluster.has_crd(POD_MONITOR_CRD))
            conflict = _foreign_object(cluster, source, children)
            if conflict is not None:
                stall_reason = Reason.NAME_CONFLICT
                plan = refused_plan(Reason.NAME_CONFLICT, conflict)
            else:
                for child in children:
                    cluster.apply(child)
                blocker = _apply_scaling_driver(cluster, source)

    deployment = cluster.get("apps/v1", "Deployment", namespace, name)
    ready = int((deployment or {}).get("status", {}).get("readyReplicas", 0))
    unschedulable = (
        cluster.unschedulable_pods(namespace, selector_string(name))
        if deployment is not None and ready < desired_replicas
        else []
    )
    outcome = compute_status(
        name=name,
        namespace=namespace,
        generation=generation,
        desired_replicas=desired_replicas,
        service_port=service_port,
        plan=plan,
        stall_reason=stall_reason,
        blocker=blocker,
        observed=Observed(deployment, unschedulable),
        previous_status=previous_status,
        now=utc_now(),
    )
    if status_changed(previous_status, outcome.status):
        cluster.patch_visionmodel_status(namespace, name, outcome.status)
    for event in outcome.events:
        post_event(body, event)
    stalled = [c["reason"] for c in outcome.status["conditions"] if c["type"] == "Stalled"]
    metrics.record_visionmodel(
        namespace,
        name,
        plan=plan,
        desired=desired_replicas,
        ready=ready,
        warm=scaling.warm_replicas if scaling is not None else None,
        maximum=scaling.max_replicas if scaling is not None else None,
        stalled_reason=stalled[0] if stalled else None,
    )
