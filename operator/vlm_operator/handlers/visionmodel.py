"""kopf handlers: every trigger calls the one level-based reconcile."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, cast

import kopf

from vlm_operator.api import constants as c
from vlm_operator.config import OperatorConfig
from vlm_operator.k8s.cluster import Cluster
from vlm_operator.reconcile.status import Event
from vlm_operator.reconciler import reconcile

CONFIG = OperatorConfig.from_environment()
"""Read once: the timers' intervals are fixed when the handlers are registered."""
CHILD_LABELS = {c.LABEL_MANAGED_BY: c.FIELD_MANAGER}


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    """Store kopf's bookkeeping under our own annotations and connect to the cluster."""
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=c.GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=c.GROUP, key="last-handled-configuration"
    )
    settings.posting.level = logging.WARNING
    settings.execution.max_workers = 8
    settings.watching.server_timeout = 300
    memo["cluster"] = Cluster.connect()
    memo["config"] = CONFIG


def post_event(body: Mapping[str, Any], event: Event) -> None:
    """Post an event on the VisionModel through kopf's event queue."""
    kopf.event(cast(kopf.Body, body), type=event.type, reason=event.reason, message=event.message)


def _reconcile(memo: Any, namespace: str | None, name: str) -> None:
    if namespace is None:
        raise kopf.PermanentError("VisionModels are namespaced; got one without a namespace")
    reconcile(memo["cluster"], memo["config"], namespace, name, post_event)


@kopf.on.resume(c.GROUP, c.PLURAL)
@kopf.on.create(c.GROUP, c.PLURAL)
@kopf.on.update(c.GROUP, c.PLURAL, field="spec")
def visionmodel_changed(name: str, namespace: str | None, memo: Any, **_: Any) -> None:
    """A VisionModel appeared, changed, or the operator restarted."""
    _reconcile(memo, namespace, name)


@kopf.timer(c.GROUP, c.PLURAL, interval=CONFIG.resync_seconds, initial_delay=CONFIG.resync_seconds)
def visionmodel_resync(name: str, namespace: str | None, memo: Any, **_: Any) -> None:
    """Periodic level-based pass that repairs drift nobody told us about."""
    _reconcile(memo, namespace, name)


def _owner_name(body: Mapping[str, Any]) -> str | None:
    for reference in body.get("metadata", {}).get("ownerReferences", []):
        if reference.get("kind") == c.KIND and reference.get("controller"):
            return str(reference["name"])
    return None


@kopf.on.event("apps", "v1", "deployments", labels=CHILD_LABELS)
@kopf.on.event("", "v1", "services", labels=CHILD_LABELS)
@kopf.on.event("policy", "v1", "poddisruptionbudgets", labels=CHILD_LABELS)
def child_changed(body: kopf.Body, namespace: str | None, memo: Any, **_: Any) -> None:
    """A child changed or vanished: reconcile its owner, which restores and reports."""
    owner = _owner_name(body)
    if owner is not None:
        _reconcile(memo, namespace, owner)
