"""One level-based reconcile: plan, render, apply, observe, report. No kopf in here."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from vlm_operator import metrics
from vlm_operator.api.constants import Reason
from vlm_operator.api.v1alpha1 import ServiceSpec, VisionModelSpec
from vlm_operator.catalog.gpus import gpu_offers_from_nodes
from vlm_operator.config import OperatorConfig
from vlm_operator.k8s.cluster import Cluster
from vlm_operator.reconcile.status import Event, Observed, compute_status, status_changed
from vlm_operator.render.autoscaling import (
    KEDA_CRD,
    render_horizontal_pod_autoscaler,
    render_scaled_object,
)
from vlm_operator.render.labels import selector_string
from vlm_operator.render.workload import RenderInput, render_children
from vlm_operator.sizing import plan_visionmodel, refused_plan

EventSink = Callable[[Mapping[str, Any], Event], None]
POD_MONITOR_CRD = "podmonitors.monitoring.coreos.com"

_locks: dict[tuple[str, str], threading.Lock] = {}
_locks_guard = threading.Lock()


def _lock_for(namespace: str, name: str) -> threading.Lock:
    """One lock per VisionModel: events, timers and spec changes never reconcile it at once."""
    with _locks_guard:
        return _locks.setdefault((namespace, name), threading.Lock())


def utc_now() -> str:
    """The current time as an RFC 3339 timestamp with second precision."""
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


class SpecError(Exception):
    """The spec cannot be acted on; the message says which field and why."""


def _architecture_config(
    cluster: Cluster, namespace: str, spec: VisionModelSpec
) -> Mapping[str, Any] | None:
    architecture = spec.model.architecture
    if architecture is None or architecture.config_map_ref is None:
        return None
    ref = architecture.config_map_ref
    text = cluster.read_config_map_key(namespace, ref.name, ref.key)
    if text is None:
        raise SpecError(
            f"spec.model.architecture.configMapRef: ConfigMap {ref.name} has no key {ref.key}"
        )
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError as error:
        raise SpecError(
            f"spec.model.architecture.configMapRef: {ref.name}/{ref.key} is not JSON: {error}"
        ) from error
    if not isinstance(parsed, dict):
        raise SpecError(
            f"spec.model.architecture.configMapRef: {ref.name}/{ref.key} is not an object"
        )
    return parsed


def _owned_by(body: Mapping[str, Any] | None, uid: str) -> bool:
    references = (body or {}).get("metadata", {}).get("ownerReferences", [])
    return any(reference.get("uid") == uid for reference in references)


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
    namespace: str,
    name: str,
    post_event: EventSink,
) -> None:
    """Bring one VisionModel's children and status in line with its spec. Idempotent."""
    started = time.monotonic()
    with _lock_for(namespace, name):
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
        metrics.forget_visionmodel(namespace, name)
        return
    generation = int(body["metadata"].get("generation", 0))
    previous_status: Mapping[str, Any] = body.get("status") or {}
    raw_spec = body.get("spec", {})
    desired_replicas = int(raw_spec.get("replicas", 1))
    # Read before validation so that even an invalid spec gets a status with its endpoint.
    service_port = int(raw_spec.get("service", {}).get("port", ServiceSpec().port))

    stall_reason: str | None
    blocker: tuple[str, str] | None = None
    try:
        spec = VisionModelSpec.model_validate(raw_spec)
        architecture_config = _architecture_config(cluster, namespace, spec)
    except (ValidationError, SpecError) as error:
        stall_reason = Reason.INVALID_SPEC
        plan = refused_plan(Reason.INVALID_SPEC, str(error).replace("\n", " ")).to_status()
    else:
        offers = gpu_offers_from_nodes(cluster.list_nodes())
        planned = plan_visionmodel(spec, gpu_offers=offers, architecture_config=architecture_config)
        plan = planned.to_status()
        stall_reason = None if planned.feasible else (planned.stall_reason or Reason.INVALID_SPEC)
        if planned.feasible:
            source = RenderInput(name, namespace, body["metadata"]["uid"], spec, plan, config)
            for child in render_children(source, pod_monitor=cluster.has_crd(POD_MONITOR_CRD)):
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
    metrics.record_visionmodel(
        namespace,
        name,
        planned_gpus=plan.gpus_per_replica if plan.feasible else 0,
        desired=desired_replicas,
        ready=ready,
    )
