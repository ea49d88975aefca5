"""kopf handlers of the reconcile loop: every trigger calls the one level-based reconcile."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

import kopf

from vlm_operator.api import constants as c
from vlm_operator.api.config import OperatorConfig
from vlm_operator.controllers.reconcile_loop import reconcile
from vlm_operator.controllers.state import forget_visionmodel
from vlm_operator.status.events import Event

CHILD_LABELS = {c.LABEL_MANAGED_BY: c.FIELD_MANAGER}


def post_event(body: Mapping[str, Any], event: Event) -> None:
    """Post an event on the VisionModel through kopf's event queue."""
    kopf.event(cast(kopf.Body, body), type=event.type, reason=event.reason, message=event.message)


def _reconcile(memo: Any, namespace: str | None, name: str) -> None:
    if namespace is None:
        raise kopf.PermanentError("VisionModels are namespaced; got one without a namespace")
    reconcile(memo["cluster"], memo["config"], memo["memory"], namespace, name, post_event)


def _owner_name(body: Mapping[str, Any]) -> str | None:
    for reference in body.get("metadata", {}).get("ownerReferences", []):
        if reference.get("kind") == c.KIND and reference.get("controller"):
            return str(reference["name"])
    return None


def register(registry: kopf.OperatorRegistry, config: OperatorConfig) -> None:
    """Register the reconcile loop's handlers, with the intervals of this configuration."""

    @kopf.on.resume(c.GROUP, c.PLURAL, registry=registry)
    @kopf.on.create(c.GROUP, c.PLURAL, registry=registry)
    @kopf.on.update(c.GROUP, c.PLURAL, field="spec", registry=registry)
    def visionmodel_changed(name: str, namespace: str | None, memo: Any, **_: Any) -> None:
        """A VisionModel appeared, changed, or the operator restarted."""
        _reconcile(memo, namespace, name)

    @kopf.timer(
        c.GROUP,
        c.PLURAL,
        interval=config.resync_seconds,
        initial_delay=config.resync_seconds,
        registry=registry,
    )
    def visionmodel_resync(name: str, namespace: str | None, memo: Any, **_: Any) -> None:
        """Periodic level-based pass that repairs drift nobody told us about."""
        _reconcile(memo, namespace, name)

    @kopf.on.event(c.GROUP, c.PLURAL, registry=registry)
    def visionmodel_deleted(
        event: kopf.RawEvent, name: str, namespace: str | None, memo: Any, **_: Any
    ) -> None:
        """Drop what the loops remember of a VisionModel as soon as it is gone."""
        if event["type"] == "DELETED" and namespace is not None:
            forget_visionmodel(memo["memory"], namespace, name)

    @kopf.on.event("apps", "v1", "deployments", labels=CHILD_LABELS, registry=registry)
    @kopf.on.event("", "v1", "services", labels=CHILD_LABELS, registry=registry)
    @kopf.on.event("policy", "v1", "poddisruptionbudgets", labels=CHILD_LABELS, registry=registry)
    def child_changed(body: kopf.Body, namespace: str | None, memo: Any, **_: Any) -> None:
        """A child changed or vanished: reconcile its owner, which restores and reports."""
        owner = _owner_name(body)
        if owner is not None:
            _reconcile(memo, namespace, owner)
