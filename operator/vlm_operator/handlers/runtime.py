"""Running the operator: kopf's settings, the handler registry and the shared memo."""

from __future__ import annotations

import logging
import random
import re
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import kopf

from vlm_operator.api.config import OperatorConfig
from vlm_operator.controllers.runner import FaultLog, Runner, always_acting
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


PRIORITY_TIEBREAK_BITS = 16
"""Random low bits of a peering priority, for processes that start in the same millisecond."""


class PeeringMissingError(RuntimeError):
    """Peering was asked for, but its object does not exist: kopf would wait forever."""


def peering_priority(started_ns: int, tiebreak: int) -> int:
    """A kopf peering priority unique to one process: the earlier a process started, the higher
    its priority, so a running operator keeps acting while a newer one waits. kopf pauses every
    process that sees another of the same priority, so no two may share one."""
    started_ms = started_ns // 1_000_000
    return -((started_ms << PRIORITY_TIEBREAK_BITS) | tiebreak)


def build_settings() -> kopf.OperatorSettings:
    """Watches that reconnect quietly: an outage shows as one line per cause, not a stream."""
    settings = kopf.OperatorSettings()
    # The served namespaces are exact names and the CRDs are installed before the operator, so
    # kopf need not list namespaces or watch CRDs, which the chart's RBAC does not grant.
    settings.scanning.disabled = True
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.reconnect_backoff = 1.0
    # Retries of a watch or an API call: about 20 minutes before kopf gives up on a stream.
    settings.networking.error_backoffs = [1, 2, 5, 10, 15, *([30] * 40)]
    return settings


def check_peering(cluster: Cluster, peering: str, namespaces: Collection[str]) -> None:
    """Raise PeeringMissingError unless the peering object exists where kopf will look for it:
    cluster-wide, or in every served namespace."""
    scopes: list[str | None] = list(namespaces) or [None]
    missing = [scope for scope in scopes if not cluster.peering_exists(peering, scope)]
    if missing:
        where = ", ".join(f"KopfPeering {peering} in {scope}" for scope in missing if scope)
        raise PeeringMissingError(
            f"peering {peering!r} was asked for, but {where or f'ClusterKopfPeering {peering}'} "
            "does not exist; install it (the chart does when replicaCount > 1) or run --standalone"
        )


@dataclass(frozen=True)
class PeeringGate:
    """Whether this process acts: no live peer of a higher priority holds the peering object,
    the rule kopf pauses its watches by. The runner's tickers ask it before queueing work. Each
    process's priority is its own, so this process's keep-alive never counts against it."""

    cluster: Cluster
    peering: str
    namespaces: tuple[str, ...]
    priority: int

    def __call__(self) -> bool:
        """Read the peering objects and compare the live peers' priorities with this one's."""
        now = datetime.now(UTC)
        scopes: list[str | None] = list(self.namespaces) or [None]
        for scope in scopes:
            for peer in (self.cluster.peers(self.peering, scope) or {}).values():
                if int(peer.get("priority", 0)) <= self.priority:
                    continue
                last_seen = datetime.fromisoformat(str(peer.get("lastseen")))
                if last_seen.tzinfo is None:
                    last_seen = last_seen.replace(tzinfo=UTC)
                if (now - last_seen).total_seconds() <= float(peer.get("lifetime", 60)):
                    return False
        return True


def run_operator(
    config: OperatorConfig,
    *,
    namespaces: Collection[str],
    peering: str | None,
    liveness_endpoint: str | None,
) -> None:
    """Run the operator until it is stopped; every namespace when `namespaces` is empty.
    Standalone when `peering` is None; otherwise kopf peering through that object, which must
    exist, with a priority of this process's own."""
    cluster = Cluster.connect()
    priority = peering_priority(time.time_ns(), random.getrandbits(PRIORITY_TIEBREAK_BITS))
    acting: Callable[[], bool] = always_acting
    if peering is not None:
        check_peering(cluster, peering, namespaces)
        acting = PeeringGate(cluster, peering, tuple(namespaces), priority)
    # kopf logs every handled event at INFO: thousands of lines per minute at fleet scale.
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    runner = Runner(
        cluster, config, list(namespaces), workers=config.reconcile_workers, acting=acting
    )
    retries = WatchRetryFilter(runner.faults)
    for handler in logging.getLogger().handlers:  # filters on handlers see every logger's records
        handler.addFilter(retries)
    kopf.run(
        registry=build_registry(),
        settings=build_settings(),
        memo=kopf.Memo(runner=runner),
        standalone=peering is None,
        peering_name=peering,
        priority=priority,
        clusterwide=not namespaces,
        namespaces=list(namespaces),
        liveness_endpoint=liveness_endpoint,
    )
