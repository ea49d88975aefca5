"""Sizing: the memory model and the planner. Pure: no Kubernetes, no I/O."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from vlm_operator.api.constants import Reason
from vlm_operator.api.v1alpha1 import VisionModelSpec
from vlm_operator.catalog.gpus import GpuOffer
from vlm_operator.sizing.planner import Plan, plan_candidates, refused_plan
from vlm_operator.sizing.suggestions import suggest_changes

__all__ = ["Plan", "plan_visionmodel", "refused_plan"]


def plan_visionmodel(
    spec: VisionModelSpec,
    *,
    gpu_offers: Sequence[GpuOffer] | None = None,
    architecture_config: Mapping[str, Any] | None = None,
    gpu_costs: Mapping[str, float] | None = None,
    previous: Mapping[str, Any] | None = None,
) -> Plan:
    """Size one VisionModel. gpu_offers None means no cluster knowledge: the whole GPU catalog.
    gpu_costs overrides the catalog's relative cost per product; previous is the status.plan
    the VisionModel runs with, kept while it fits.

    An infeasible plan for lack of memory names the smallest changes that would fit."""
    plan, architecture = plan_candidates(
        spec,
        gpu_offers=gpu_offers,
        architecture_config=architecture_config,
        gpu_costs=gpu_costs,
        previous=previous,
    )
    if plan.stall_reason != Reason.INSUFFICIENT_GPU_MEMORY or architecture is None:
        return plan
    changes = suggest_changes(spec, architecture, gpu_offers)
    advice = (
        f"would fit with {'; or '.join(changes)}"
        if changes
        else "no single change of GPUs, precision, context or images fits"
    )
    return replace(plan, reason=f"{plan.reason}. {advice[0].upper()}{advice[1:]}")
