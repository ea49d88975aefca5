"""The reconcile loop: spec -> plan -> desired children -> apply -> observed -> status.

Children are applied one by one: a child the API server refuses becomes a Stalled condition with
the server's own reason and message, the others are still applied, and the caller retries the
VisionModel with backoff. A child that already holds the intent is not written at all."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from vlm_operator.api.config import OperatorConfig
from vlm_operator.api.constants import Reason
from vlm_operator.api.v1alpha1 import ScalingSpec, ServiceSpec, VisionModelSpec
from vlm_operator.controllers import metrics
from vlm_operator.controllers.clock import utc_now
from vlm_operator.controllers.intent import fingerprint, up_to_date, with_intent
from vlm_operator.controllers.planning import SpecError, check_engine_policy, plan_for
from vlm_operator.controllers.state import Memory, VisionModelMemory
from vlm_operator.k8s.cluster import Cluster
from vlm_operator.k8s.errors import Refusal, RefusedError
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


@dataclass(frozen=True)
class ChildFailure:
    """One child the API server refused to apply."""

    kind: str
    namespace: str
    name: str
    refusal: Refusal

    @property
    def reason(self) -> str:
        """CamelCase condition reason: the kind and the API server's Status reason."""
        return f"{self.kind}{self.refusal.reason}"

    def describe(self) -> str:
        """The failure as a user reads it in the condition and the event."""
        return (
            f"applying {self.kind} {self.namespace}/{self.name} failed "
            f"({self.refusal.code} {self.refusal.reason}): {self.refusal.message}"
        )


def _owned_by(body: Mapping[str, Any] | None, uid: str) -> bool:
    references = (body or {}).get("metadata", {}).get("ownerReferences", [])
    return any(reference.get("uid") == uid for reference in references)


def _apply_child(
    cluster: Cluster, entry: VisionModelMemory, manifest: Mapping[str, Any]
) -> ChildFailure | None:
    """Apply one child unless it already holds the intent; a refusal is returned, not raised."""
    kind, metadata = manifest["kind"], manifest["metadata"]
    annotated, digest = with_intent(manifest)
    child = (kind, metadata["name"])
    watched = cluster.cache.synced(kind)
    if watched:
        observed = cluster.cache.get(kind, metadata["namespace"], metadata["name"])
        if observed is not None and up_to_date(
            kind, observed, digest, entry.fingerprints.get(child)
        ):
            entry.fingerprints[child] = fingerprint(kind, observed)
            return None
    elif entry.applied.get(child) == digest:
        return None
    try:
        applied = cluster.apply(annotated)
    except RefusedError as error:  # no answer at all raises on: the whole reconcile is retried
        entry.applied.pop(child, None)
        entry.fingerprints.pop(child, None)
        return ChildFailure(kind, metadata["namespace"], metadata["name"], error.refusal)
    if watched and applied is not None:
        entry.fingerprints[child] = fingerprint(kind, applied)
    elif watched:  # created: the first version the watch delivers is the operator's own
        entry.fingerprints.pop(child, None)
    else:
        entry.applied[child] = digest
    return None


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
        cached = cluster.get(manifest["apiVersion"], kind, source.namespace, name)
        if cached is not None and not name_conflict(cached, source.uid):
            continue  # the cache holds only labelled children: a foreign object needs a read
        if name_conflict(
            cluster.read(manifest["apiVersion"], kind, source.namespace, name), source.uid
        ):
            return (
                f"{kind} {source.namespace}/{name} exists and was not created by this "
                "VisionModel; the operator neither changes nor adopts it. Rename the "
                f"VisionModel or remove the {kind}."
            )
    return None


def _apply_scaling_driver(
    cluster: Cluster, entry: VisionModelMemory, source: RenderInput, failures: list[ChildFailure]
) -> tuple[str, str] | None:
    """Keep exactly one writer of spec.replicas: apply the chosen driver's object, delete the
    other's (looked up only when the driver changed in this run). Returns a (reason, message)
    blocker when the chosen driver is not installed."""
    scaling = source.spec.scaling
    driver = str(scaling.driver) if scaling is not None else ""
    keda_installed = cluster.has_crd(KEDA_CRD)
    blocker = None
    failure = None
    if driver == "keda":
        if keda_installed:
            failure = _apply_child(cluster, entry, render_scaled_object(source))
        else:
            blocker = (
                Reason.AUTOSCALER_UNAVAILABLE,
                "spec.scaling.driver is keda, but KEDA's ScaledObject kind "
                f"({KEDA_CRD}) is not installed; replicas stay as spec.replicas says.",
            )
    elif driver == "hpa":
        failure = _apply_child(cluster, entry, render_horizontal_pod_autoscaler(source))
    if failure is not None:
        failures.append(failure)
    if entry.driver == driver:
        return blocker
    stale = [("autoscaling/v2", "HorizontalPodAutoscaler")] if driver != "hpa" else []
    if driver != "keda" and keda_installed:
        stale.append(("keda.sh/v1alpha1", "ScaledObject"))
    for api_version, kind in stale:
        if _owned_by(cluster.get(api_version, kind, source.namespace, source.name), source.uid):
            cluster.delete(api_version, kind, source.namespace, source.name)
        entry.applied.pop((kind, source.name), None)
    entry.driver = driver
    return blocker


def reconcile(
    cluster: Cluster,
    config: OperatorConfig,
    memory: Memory,
    namespace: str,
    name: str,
    post_event: EventSink,
) -> bool:
    """Bring one VisionModel's children and status in line with its spec. Idempotent. Returns
    whether a child was refused, so the caller retries with backoff."""
    started = time.monotonic()
    entry = memory.of(namespace, name)
    with entry.lock:
        try:
            refused = _reconcile_locked(cluster, config, memory, entry, namespace, name, post_event)
        except Exception as error:
            metrics.RECONCILE_ERRORS.labels(type(error).__name__).inc()
            metrics.RECONCILES.labels("error").inc()
            raise
        finally:
            metrics.RECONCILE_SECONDS.observe(time.monotonic() - started)
    metrics.RECONCILES.labels("refused" if refused else "ok").inc()
    return refused


def _reconcile_locked(
    cluster: Cluster,
    config: OperatorConfig,
    memory: Memory,
    entry: VisionModelMemory,
    namespace: str,
    name: str,
    post_event: EventSink,
) -> bool:
    body = cluster.get_visionmodel(namespace, name)
    if body is None or body["metadata"].get("deletionTimestamp"):
        return False  # the garbage collector removes the children with their owner
    generation = int(body["metadata"].get("generation", 0))
    previous_status: Mapping[str, Any] = body.get("status") or {}
    raw_spec = body.get("spec", {})
    desired_replicas = int(raw_spec.get("replicas", 1))
    # Read before validation so that even an invalid spec gets a status with its endpoint.
    service_port = int(raw_spec.get("service", {}).get("port", ServiceSpec().port))

    stall_reason: str | None
    blocker: tuple[str, str] | None = None
    failures: list[ChildFailure] = []
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
                    failure = _apply_child(cluster, entry, child)
                    if failure is not None:
                        failures.append(failure)
                blocker = _apply_scaling_driver(cluster, entry, source, failures)
    if failures:
        blocker = (failures[0].reason, "; ".join(failure.describe() for failure in failures))

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
    memory.publish(
        namespace,
        name,
        entry,
        lambda: metrics.record_visionmodel(
            namespace,
            name,
            plan=plan,
            desired=desired_replicas,
            ready=ready,
            warm=scaling.warm_replicas if scaling is not None else None,
            maximum=scaling.max_replicas if scaling is not None else None,
            stalled_reason=stalled[0] if stalled else None,
        ),
    )
    return bool(failures)
