"""One autoscaling pass for a VisionModel whose driver is the operator. No kopf in here."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from vlm_operator.api.constants import Reason
from vlm_operator.api.v1alpha1 import ScalingSpec, VisionModelSpec
from vlm_operator.autoscale.policy import Decision, FleetState, History, decide
from vlm_operator.autoscale.sources import (
    DisabledSource,
    Fleet,
    MetricSource,
    PodScrapeSource,
    PrometheusSource,
)
from vlm_operator.catalog.engine import SERVE_PORT
from vlm_operator.config import OperatorConfig
from vlm_operator.k8s.cluster import Cluster
from vlm_operator.reconcile.status import Event
from vlm_operator.reconciler import EventSink, utc_now
from vlm_operator.render.labels import selector_string

_histories: dict[tuple[str, str], History] = {}
_histories_guard = threading.Lock()


def metric_source(
    cluster: Cluster, config: OperatorConfig, namespace: str, name: str, scaling: ScalingSpec
) -> MetricSource:
    """The source the VisionModel asks for, as far as the operator's configuration allows."""
    prometheus = scaling.metrics_source.prometheus
    if prometheus is not None:
        return PrometheusSource(prometheus.url)
    if not config.scrape_pods:
        return DisabledSource("scraping pods is disabled in the operator's configuration")
    endpoints = {
        pod: f"http://{address}:{SERVE_PORT}/metrics"
        for pod, address in cluster.ready_pod_addresses(namespace, selector_string(name)).items()
    }
    return PodScrapeSource(endpoints)


def autoscaling_status(decision: Decision, last_scale_time: str | None) -> dict[str, Any]:
    """status.autoscaling for one decision."""
    return {
        "desiredReplicas": decision.desired_replicas,
        "demandReplicas": decision.demand_replicas,
        "warmReplicas": decision.warm_replicas,
        "lastScaleTime": last_scale_time,
        "reason": decision.reason[:1024],
        "metrics": decision.metrics,
    }


def autoscale(
    cluster: Cluster,
    config: OperatorConfig,
    namespace: str,
    name: str,
    post_event: EventSink,
) -> None:
    """Evaluate the policy once and, when it asks, scale through the scale subresource."""
    body = cluster.get_visionmodel(namespace, name)
    if body is None:
        with _histories_guard:
            _histories.pop((namespace, name), None)
        return
    try:
        spec = VisionModelSpec.model_validate(body.get("spec", {}))
    except ValidationError:
        return  # the reconciler reports invalid specs
    scaling = spec.scaling
    if scaling is None or scaling.driver != "operator":
        return
    status: Mapping[str, Any] = body.get("status") or {}
    plan = status.get("plan") or {}
    if not plan.get("feasible"):
        return  # nothing is served that could be scaled
    deployment = cluster.get("apps/v1", "Deployment", namespace, name) or {}
    observed = deployment.get("status", {})
    fleet = FleetState(
        spec_replicas=spec.replicas,
        ready_replicas=int(observed.get("readyReplicas", 0)),
        existing_replicas=int(observed.get("replicas", 0)),
        max_num_seqs=int(plan["maxNumSeqs"]),
    )
    now = time.time()
    source = metric_source(cluster, config, namespace, name, scaling)
    sample = source.read(Fleet(namespace, name), now)
    with _histories_guard:
        # A fresh history after a restart starts with the current count, so nothing is scaled
        # down before a full window of evidence.
        history = _histories.get((namespace, name)) or History(
            recommendations=((now, spec.replicas, spec.replicas),)
        )
    decision = decide(sample, fleet, scaling, history, now)
    with _histories_guard:
        _histories[(namespace, name)] = decision.history

    previous = status.get("autoscaling") or {}
    last_scale_time = previous.get("lastScaleTime")
    if decision.changes(spec.replicas):
        cluster.scale_visionmodel(namespace, name, decision.desired_replicas)
        last_scale_time = utc_now()
        reason = (
            Reason.SCALED_UP if decision.desired_replicas > spec.replicas else Reason.SCALED_DOWN
        )
        post_event(
            body,
            Event(
                "Normal",
                reason,
                f"{spec.replicas} -> {decision.desired_replicas} replicas: {decision.reason}",
            ),
        )
    elif sample.problem and not str(previous.get("reason", "")).startswith("holding"):
        post_event(body, Event("Warning", Reason.SCALING_HELD, decision.reason))
    new_status = autoscaling_status(decision, last_scale_time)
    if new_status != previous:
        cluster.patch_visionmodel_status(namespace, name, {"autoscaling": new_status})
