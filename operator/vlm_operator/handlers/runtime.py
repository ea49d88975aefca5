"""Running the operator: kopf's settings, the handler registry and the shared memo."""

from __future__ import annotations

import logging
from collections.abc import Collection
from typing import Any

import kopf

from vlm_operator.api.config import OperatorConfig
from vlm_operator.controllers.runner import Runner
from vlm_operator.handlers import visionmodel
from vlm_operator.k8s.cluster import Cluster


def build_registry() -> kopf.OperatorRegistry:
    """Every handler of the operator."""
    registry = kopf.OperatorRegistry()

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        """The in-cluster service account, or else the kubeconfig, as the API client finds them."""
        return kopf.login_via_client(**kwargs)

    visionmodel.register(registry)
    return registry


def build_settings() -> kopf.OperatorSettings:
    """Watches that reconnect quietly: an outage shows as one line per cause, not a stream."""
    settings = kopf.OperatorSettings()
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.reconnect_backoff = 1.0
    settings.networking.error_backoffs = [1, 2, 5, 10, 20, 30]
    return settings


def run_operator(
    config: OperatorConfig,
    *,
    namespaces: Collection[str],
    standalone: bool,
    liveness_endpoint: str | None,
) -> None:
    """Run the operator until it is stopped; every namespace when `namespaces` is empty."""
    # kopf logs every handled event at INFO: thousands of lines per minute at fleet scale.
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    runner = Runner(Cluster.connect(), config, list(namespaces), workers=config.reconcile_workers)
    kopf.run(
        registry=build_registry(),
        settings=build_settings(),
        memo=kopf.Memo(runner=runner),
        standalone=standalone,
        clusterwide=not namespaces,
        namespaces=list(namespaces),
        liveness_endpoint=liveness_endpoint,
    )
