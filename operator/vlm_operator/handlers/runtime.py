"""Running the operator: kopf's settings, the handler registry and the shared memo."""

from __future__ import annotations

import logging
import re
from collections.abc import Collection
from typing import Any

import kopf

from vlm_operator.api.config import OperatorConfig
from vlm_operator.controllers.runner import FaultLog, Runner
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


class WatchRetryFilter(logging.Filter):
    """kopf logs each retry of each watch stream as an ERROR; during an outage they all say the
    same thing. They go to the FaultLog instead: one line per cause until it clears."""

    RETRY = re.compile(r"Request attempt #\d+/\d+ failed; will retry")
    ERROR_NAME = re.compile(r"(\w+(?:Error|Exception|Timeout))\(")

    def __init__(self, faults: FaultLog) -> None:
        super().__init__()
        self._faults = faults

    def filter(self, record: logging.LogRecord) -> bool:
        """Drop a retry record after handing its cause to the FaultLog."""
        message = record.getMessage()
        if not self.RETRY.search(message):
            return True
        names = self.ERROR_NAME.findall(message)
        self._faults.failed(f"API server unreachable: {names[-1] if names else 'no answer'}")
        return False


def build_settings() -> kopf.OperatorSettings:
    """Watches that reconnect quietly: an outage shows as one line per cause, not a stream."""
    settings = kopf.OperatorSettings()
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.reconnect_backoff = 1.0
    # Retries of a watch or an API call: about 20 minutes before kopf gives up on a stream.
    settings.networking.error_backoffs = [1, 2, 5, 10, 15, *([30] * 40)]
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
    retries = WatchRetryFilter(runner.faults)
    for handler in logging.getLogger().handlers:  # filters on handlers see every logger's records
        handler.addFilter(retries)
    kopf.run(
        registry=build_registry(),
        settings=build_settings(),
        memo=kopf.Memo(runner=runner),
        standalone=standalone,
        clusterwide=not namespaces,
        namespaces=list(namespaces),
        liveness_endpoint=liveness_endpoint,
    )
