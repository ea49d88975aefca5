"""The autoscale loop: metrics -> policy -> desired replicas -> the scale subresource, for
VisionModels whose driver is the operator."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from vlm_operator.api.config import OperatorConfig
from vlm_operator.api.constants import Reason
from vlm_operator.api.v1alpha1 import ScalingSpec, VisionModelSpec
from vlm_operator.autoscale.policy import Decision, FleetState, History, decide
from vlm_operator.autoscale.signals import Fleet
from vlm_operator.autoscale.sources import (
    DisabledSource,
    MetricSource,
    PodScrapeSource,
    PrometheusSource,
)
from vlm_operator.autoscale.sources.pods import CounterReadings
from vlm_operator.catalog.engine import SERVE_PORT
from vlm_operator.controllers.clock import utc_now
from vlm_operator.controllers.planning import SpecError, check_engine_policy, plan_for
from vlm_operator.controllers.state import Memory
from vlm_operator.k8s.cluster import Cluster
from vlm_operator.render.labels import selector_string
from vlm_operator.status.events import Event, EventSink


def metric_source(
    cluster: Cluster,
    config: OperatorConfig,
    namespace: str,
    name: str,
    scaling: ScalingSpec,
    readings: CounterReadings,
) -> MetricSource:
    """The source the VisionModel asks for, as far as the operator's configuration allows."""
    prometheus = scaling.metrics_source.prometheus
    if prometheus is not None:
        return PrometheusSource(prometheus.url, read_activator=scaling.wake_on_request)
    if not config.scrape_pods:
        return DisabledSource("scraping pods is disabled in the operator's configuration")
    endpoints = {
        pod: f"http://{address}:{SERVE_PORT}/metrics"
        for pod, address in cluster.ready_pod_addresses(namespace, selector_string(name)).items()
    }
    return PodScrapeSource(endpoints, readings=readings)


def autoscaling_status(decision: Decision, last_scale_time: str | None) -> dict[str, Any]:
    """status.autoscaling for one decision."""
    return {
        "desiredReplicas": decision.desired_replicas,
        "demandReplicas": decision.demand_replicas,
        "warmReplicas": decision.warm_replicas,
        "lastScaleTime": last_scale_time,
        "reason": decision.reason[:1024],
        "metrics": decision.metrics,
        "gpuSignal": decision.gpu_signal,
    }


def autoscale(
    cluster: Cluster,
    config: OperatorConfig,
    memory: Memory,
    namespace: str,
    name: str,
    post_event: EventSink,
) -> None:
    """Evaluate the policy once and, when it asks, scale through the scale subresource. Holds the
    VisionModel's lock, so a reconcile never runs in between."""
    entry = memory.of(namespace, name)
    with entry.lock:
        body = cluster.get_visionmodel(namespace, name)
        if body is None:
            return
        try:
            spec = VisionModelSpec.model_validate(body.get("spec", {}))
            scaling = spec.scaling
            if scaling is None or scaling.driver != "operator":
                return
            check_engine_policy(spec, config)
            plan = plan_for(cluster, namespace, spec)
        except (ValidationError, SpecError):
            return  # the reconciler reports invalid specs
        if not plan.feasible:
            return  # nothing is served that could be scaled
        deployment = cluster.get("apps/v1", "Deployment", namespace, name) or {}
        observed = deployment.get("status", {})
        fleet = FleetState(
            spec_replicas=spec.replicas,
            ready_replicas=int(observed.get("readyReplicas", 0)),
            existing_replicas=int(observed.get("replicas", 0)),
            max_num_seqs=plan.max_num_seqs,
            gpus_per_replica=plan.gpus_per_replica,
        )
        now = time.time()
        source = metric_source(cluster, config, namespace, name, scaling, entry.counter_readings)
        sample = source.read(Fleet(namespace, name), now)
        # A fresh history after a restart starts with the current count, so nothing is scaled
        # down before a full window of evidence.
        history = entry.history or History(recommendations=((now, spec.replicas, spec.replicas),))
        decision = decide(sample, fleet, scaling, history, now)
        entry.history = decision.history
        _act(
            cluster,
            namespace,
            name,
            body,
            spec.replicas,
            decision,
            bool(sample.problem),
            post_event,
        )


def _act(
    cluster: Cluster,
    namespace: str,
    name: str,
    body: Mapping[str, Any],
    spec_replicas: int,
    decision: Decision,
    holding_on_missing_metrics: bool,
    post_event: EventSink,
) -> None:
    """Scale when the decision asks, tell the user, and record the decision in status."""
    status: Mapping[str, Any] = body.get("status") or {}
    previous = status.get("autoscaling") or {}
    last_scale_time = previous.get("lastScaleTime")
    if decision.changes(spec_replicas):
        cluster.scale_visionmodel(namespace, name, decision.desired_replicas)
        last_scale_time = utc_now()
        reason = (
            Reason.SCALED_UP if decision.desired_replicas > spec_replicas else Reason.SCALED_DOWN
        )
        post_event(
            body,
            Event(
                "Normal",
                reason,
                f"{spec_replicas} -> {decision.desired_replicas} replicas: {decision.reason}",
            ),
        )
    elif holding_on_missing_metrics and not str(previous.get("reason", "")).startswith("holding"):
        post_event(body, Event("Warning", Reason.SCALING_HELD, decision.reason))
    new_status = autoscaling_status(decision, last_scale_time)
    if new_status != previous:
        cluster.patch_visionmodel_status(namespace, name, {"autoscaling": new_status})
