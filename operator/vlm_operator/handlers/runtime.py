"""Running the operator: kopf's settings, the handler registry and the shared memo."""

from __future__ import annotations

import logging
from collections.abc import Collection
from typing import Any

import kopf

from vlm_operator.api import constants as c
from vlm_operator.api.config import OperatorConfig
from vlm_operator.controllers.state import Memory
from vlm_operator.handlers import autoscaling, visionmodel
from vlm_operator.k8s.cluster import Cluster


def build_registry(config: OperatorConfig) -> kopf.OperatorRegistry:
    """Every handler of the operator, registered with this configuration's intervals."""
    registry = kopf.OperatorRegistry()

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        """The in-cluster service account, or else the kubeconfig, as the API client finds them."""
        return kopf.login_via_client(**kwargs)

    visionmodel.register(registry, config)
    autoscaling.register(registry, config)
    return registry


def build_settings() -> kopf.OperatorSettings:
    """kopf's bookkeeping under our own annotations, warnings as events, bounded workers."""
    settings = kopf.OperatorSettings()
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=c.GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=c.GROUP, key="last-handled-configuration"
    )
    settings.posting.level = logging.WARNING
    settings.execution.max_workers = 8
    settings.watching.server_timeout = 300
    return settings


def run_operator(
    config: OperatorConfig,
    *,
    namespaces: Collection[str],
    standalone: bool,
    liveness_endpoint: str | None,
) -> None:
    """Run the operator until it is stopped; every namespace when `namespaces` is empty."""
    memo = kopf.Memo(cluster=Cluster.connect(), config=config, memory=Memory())
    kopf.run(
        registry=build_registry(config),
        settings=build_settings(),
        memo=memo,
        standalone=standalone,
        clusterwide=not namespaces,
        namespaces=list(namespaces),
        liveness_endpoint=liveness_endpoint,
    )
