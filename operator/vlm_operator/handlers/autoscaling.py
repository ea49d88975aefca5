"""kopf timer: the operator's own autoscaler, for VisionModels whose driver is operator."""

from __future__ import annotations

from typing import Any

import kopf

from vlm_operator.api import constants as c
from vlm_operator.autoscaler import autoscale
from vlm_operator.handlers.visionmodel import CONFIG, post_event


def _driven_by_operator(spec: kopf.Spec, **_: Any) -> bool:
    scaling = spec.get("scaling")
    return isinstance(scaling, dict) and scaling.get("driver", "operator") == "operator"


@kopf.timer(c.GROUP, c.PLURAL, interval=CONFIG.autoscale_seconds, when=_driven_by_operator)
def visionmodel_autoscale(name: str, namespace: str | None, memo: Any, **_: Any) -> None:
    """One policy evaluation; KEDA and HPA drivers write replicas themselves instead."""
    if namespace is not None:
        autoscale(memo["cluster"], memo["config"], namespace, name, post_event)
