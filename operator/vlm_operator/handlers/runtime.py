"""Running the operator: kopf's settings, the handler registry and the shared memo."""

from __future__ import annotations

import logging
import random
import time
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
    """kopf's bookkeeping under our own annotations, warnings as events, bounded workers."""
    settings = kopf.OperatorSettings()
    # The served namespaces are exact names and the CRDs are installed before the operator, so
    # kopf need not list namespaces or watch CRDs, which the chart's RBAC does not grant.
    settings.scanning.disabled = True
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=c.GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=c.GROUP, key="last-handled-configuration"
    )
    settings.posting.level = logging.WARNING
    settings.execution.max_workers = 8
    settings.watching.server_timeout = 300
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
    if peering is not None:
        check_peering(cluster, peering, namespaces)
    memo = kopf.Memo(cluster=cluster, config=config, memory=Memory())
    kopf.run(
        registry=build_registry(config),
        settings=build_settings(),
        memo=memo,
        standalone=peering is None,
        peering_name=peering,
        priority=peering_priority(time.time_ns(), random.getrandbits(PRIORITY_TIEBREAK_BITS)),
        clusterwide=not namespaces,
        namespaces=list(namespaces),
        liveness_endpoint=liveness_endpoint,
    )
