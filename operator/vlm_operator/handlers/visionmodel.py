"""kopf handlers: watch events of VisionModels, their children and Nodes, handed to the Runner.

Only on.event handlers are registered on the VisionModel: kopf then adds no finalizer and keeps
no copy of the object in annotations, so a namespace or a VisionModel is deleted as soon as the
API server allows, whatever the operator is doing, and no annotation grows with the spec."""

from __future__ import annotations

import asyncio
from typing import Any

import kopf

from vlm_operator.api import constants as c
from vlm_operator.controllers.runner import Runner

CHILD_LABELS = {c.LABEL_MANAGED_BY: c.FIELD_MANAGER}
SHUTDOWN_SECONDS = 20.0
"""In-flight reconciles get this long after SIGTERM; below the pod's 30 s grace period."""


def register(registry: kopf.OperatorRegistry) -> None:
    """Register the watches and the start and stop of the Runner's threads."""

    @kopf.on.startup(registry=registry)
    async def start_runner(memo: Any, **_: Any) -> None:
        """Seed the cache and start the workers before the watches deliver events."""
        runner: Runner = memo["runner"]
        await asyncio.to_thread(runner.start)

    @kopf.on.cleanup(registry=registry)
    async def stop_runner(memo: Any, **_: Any) -> None:
        """Let in-flight reconciles finish within the shutdown budget."""
        runner: Runner = memo["runner"]
        await asyncio.to_thread(runner.stop, SHUTDOWN_SECONDS)

    @kopf.on.event(c.GROUP, c.PLURAL, registry=registry)
    async def visionmodel_event(event: kopf.RawEvent, memo: Any, **_: Any) -> None:
        """A VisionModel was listed, added, changed or deleted."""
        memo["runner"].visionmodel_event(event["type"], event["object"])

    def watch_child(group: str, plural: str, kind: str) -> None:
        @kopf.on.event(group, "v1", plural, labels=CHILD_LABELS, registry=registry, id=plural)
        async def child_event(event: kopf.RawEvent, memo: Any, **_: Any) -> None:
            """A child changed or vanished."""
            memo["runner"].child_event(kind, event["type"], event["object"])

    watch_child("apps", "deployments", "Deployment")
    watch_child("", "services", "Service")
    watch_child("policy", "poddisruptionbudgets", "PodDisruptionBudget")

    @kopf.on.event("", "v1", "pods", labels=CHILD_LABELS, registry=registry)
    async def pod_event(event: kopf.RawEvent, memo: Any, **_: Any) -> None:
        """A vLLM pod changed: scheduling problems are read from the cache."""
        memo["runner"].pod_event(event["type"], event["object"])

    @kopf.on.event("", "v1", "nodes", registry=registry)
    async def node_event(event: kopf.RawEvent, memo: Any, **_: Any) -> None:
        """A node changed: the planner reads nodes from the cache."""
        memo["runner"].node_event(event["type"], event["object"])
