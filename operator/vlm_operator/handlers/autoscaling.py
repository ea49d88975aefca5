"""kopf timer of the autoscale loop, for VisionModels whose driver is operator."""

from __future__ import annotations

from typing import Any

import kopf

from vlm_operator.api import constants as c
from vlm_operator.api.config import OperatorConfig
from vlm_operator.controllers.autoscale_loop import autoscale
from vlm_operator.handlers.visionmodel import post_event


def _driven_by_operator(spec: kopf.Spec, **_: Any) -> bool:
    scaling = spec.get("scaling")
    return isinstance(scaling, dict) and scaling.get("driver", "operator") == "operator"


def register(registry: kopf.OperatorRegistry, config: OperatorConfig) -> None:
    """Register the autoscaler's timer at this configuration's interval."""

    @kopf.timer(
        c.GROUP,
        c.PLURAL,
        interval=config.autoscale_seconds,
        when=_driven_by_operator,
        registry=registry,
    )
    def visionmodel_autoscale(name: str, namespace: str | None, memo: Any, **_: Any) -> None:
        """One policy evaluation; KEDA and HPA drivers write replicas themselves instead."""
        if namespace is not None:
            autoscale(memo["cluster"], memo["config"], memo["memory"], namespace, name, post_event)
