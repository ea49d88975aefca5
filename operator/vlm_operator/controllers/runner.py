"""The operator's own threads: reconcile workers fed by a work queue, one resync ticker, one
autoscale ticker with a bounded pool for metric reads. kopf only delivers watch events here, so
it keeps no state on the objects: no finalizer, no annotations."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from vlm_operator.api import constants as c
from vlm_operator.api.config import OperatorConfig
from vlm_operator.controllers.autoscale_loop import autoscale
from vlm_operator.controllers.reconcile_loop import reconcile
from vlm_operator.controllers.state import Key, Memory
from vlm_operator.controllers.workqueue import WorkQueue
from vlm_operator.k8s.cluster import Cluster
from vlm_operator.k8s.errors import cause_of, is_outage
from vlm_operator.render.labels import VISIONMODEL_LABEL
from vlm_operator.status.events import Event

logger = logging.getLogger(__name__)

CHILD_KINDS = ("Deployment", "Service", "PodDisruptionBudget")


class FaultLog:
    """Logs each cause of failure once while it lasts, and once when it clears."""

    def __init__(self, log: logging.Logger) -> None:
        self._log = log
        self._active: set[str] = set()
        self._guard = threading.Lock()

    def failed(self, cause: str, error: Exception | None = None) -> None:
        """Log a cause the first time it is seen since it last cleared; an error that is not an
        outage is a defect and gets its traceback."""
        with self._guard:
            if cause in self._active:
                return
            self._active.add(cause)
        defect = error is not None and not is_outage(error)
        self._log.error(
            "%s (logged once until it clears)", cause, exc_info=error if defect else None
        )

    def succeeded(self) -> None:
        """A request or a watch event got through: every active cause has cleared."""
        if not self._active:
            return
        with self._guard:
            cleared, self._active = self._active, set()
        for cause in sorted(cleared):
            self._log.warning("cleared: %s", cause)


def _driven_by_operator(body: Mapping[str, Any]) -> bool:
    scaling = body.get("spec", {}).get("scaling")
    return isinstance(scaling, dict) and scaling.get("driver", "operator") == "operator"


def always_acting() -> bool:
    """A standalone operator always acts."""
    return True


class Runner:
    """Owns the queue and the threads; the kopf handlers call the *_event methods."""

    def __init__(
        self,
        cluster: Cluster,
        config: OperatorConfig,
        namespaces: list[str],
        workers: int = 4,
        autoscale_workers: int = 4,
        acting: Callable[[], bool] = always_acting,
    ) -> None:
        self.cluster = cluster
        self.acting = acting
        """Whether this process acts now: False while a peered operator of higher priority
        lives. kopf pauses the watches then; the tickers ask this before queueing."""
        self.config = config
        self.namespaces = namespaces
        self.memory = Memory()
        self.queue: WorkQueue[Key] = WorkQueue()
        self.faults = FaultLog(logger)
        self._workers = workers
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._autoscale_pool = ThreadPoolExecutor(autoscale_workers, "autoscale")
        self._autoscaling: dict[Key, Future[None]] = {}

    # --- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        """Seed the cache (before kopf's watches start), then start the threads."""
        self.cluster.seed_cache(self.namespaces)
        if self.acting():
            for namespace, name in self.cluster.cache.names(c.KIND):
                self.queue.add((namespace, name))
        targets: list[tuple[str, Callable[[], None]]] = [
            (f"reconcile-{index}", self._work) for index in range(self._workers)
        ]
        targets += [
            ("resync", lambda: self._tick(self.config.resync_seconds, self._resync)),
            ("autoscale", lambda: self._tick(self.config.autoscale_seconds, self._autoscale)),
        ]
        for thread_name, target in targets:
            thread = threading.Thread(target=target, name=thread_name, daemon=True)
            thread.start()
            self._threads.append(thread)
        logger.info(
            "started %d reconcile workers; %d VisionModels, %d nodes in the cache",
            self._workers,
            len(self.cluster.cache.names(c.KIND)),
            len(self.cluster.cache.names("Node")),
        )

    def stop(self, budget_seconds: float) -> None:
        """Let in-flight work finish within the budget, then return (threads are daemons)."""
        deadline = time.monotonic() + budget_seconds
        self._stopping.set()
        self.queue.shut_down()
        self._autoscale_pool.shutdown(wait=False, cancel_futures=True)
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        busy = [thread.name for thread in self._threads if thread.is_alive()]
        if busy:
            logger.warning("stopping with %s still busy after %.0fs", busy, budget_seconds)

    # --- events from the watches ---------------------------------------------------------
    def visionmodel_event(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        """A VisionModel was listed, added, changed or deleted. Only spec changes (a new
        generation) and new objects are queued: status writes do not cause reconciles."""
        self.faults.succeeded()  # an event arrived: the watches are connected
        metadata = body.get("metadata", {})
        key = (str(metadata.get("namespace")), str(metadata.get("name")))
        cache = self.cluster.cache
        if event_type == "DELETED":
            cache.remove(c.KIND, *key)
            self.memory.forget(*key)
            return
        known = cache.get(c.KIND, *key)
        cache.put(c.KIND, body)
        if known is None or known["metadata"].get("generation") != metadata.get("generation"):
            self.queue.add(key)

    def child_event(self, kind: str, event_type: str | None, body: Mapping[str, Any]) -> None:
        """A child changed or vanished: reconcile its owner, which restores and reports."""
        self.faults.succeeded()
        metadata = body.get("metadata", {})
        cache = self.cluster.cache
        if event_type == "DELETED":
            cache.remove(kind, str(metadata.get("namespace")), str(metadata.get("name")))
        else:
            cache.put(kind, body)
        for reference in metadata.get("ownerReferences", []):
            if reference.get("kind") == c.KIND and reference.get("controller"):
                self.queue.add((str(metadata.get("namespace")), str(reference["name"])))

    def pod_event(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        """A vLLM pod changed: its VisionModel reports scheduling problems from the cache."""
        self.faults.succeeded()
        metadata = body.get("metadata", {})
        namespace = str(metadata.get("namespace"))
        if event_type == "DELETED":
            self.cluster.cache.remove("Pod", namespace, str(metadata.get("name")))
        else:
            self.cluster.cache.put("Pod", body)
        owner = (metadata.get("labels") or {}).get(VISIONMODEL_LABEL)
        if owner:
            self.queue.add((namespace, str(owner)))

    def node_event(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        """A node changed: keep the cache the planner reads current."""
        self.faults.succeeded()
        if event_type == "DELETED":
            self.cluster.cache.remove("Node", "", str(body.get("metadata", {}).get("name")))
        else:
            self.cluster.cache.put("Node", body)

    # --- work -------------------------------------------------------------------------------
    def post_event(self, body: Mapping[str, Any], event: Event) -> None:
        """Post an event on the VisionModel; a failure to post is logged once, not raised."""
        try:
            self.cluster.post_event(body, event.type, event.reason, event.message)
        except Exception as error:  # events are best effort; status carries the same news
            self.faults.failed(f"posting events: {cause_of(error)}")

    def _work(self) -> None:
        while (key := self.queue.get()) is not None:
            try:
                refused = reconcile(
                    self.cluster, self.config, self.memory, *key, post_event=self.post_event
                )
            except Exception as error:
                delay = self.queue.retry(key)
                self.faults.failed(cause_of(error), error)
                logger.debug("reconcile of %s/%s failed, retry in %.0fs", *key, delay)
            else:
                self.faults.succeeded()
                if refused:
                    self.queue.retry(key)
                else:
                    self.queue.forget(key)
            finally:
                self.queue.done(key)

    def _tick(self, interval: float, action: Callable[[], None]) -> None:
        while not self._stopping.wait(interval):
            try:
                action()
            except Exception as error:
                self.faults.failed(cause_of(error), error)

    def _resync(self) -> None:
        if not self.acting():
            return
        for key in self.cluster.cache.names(c.KIND):
            self.queue.add(key)

    def _autoscale(self) -> None:
        if not self.acting():
            return
        for body in self.cluster.cache.bodies(c.KIND):
            key = (str(body["metadata"]["namespace"]), str(body["metadata"]["name"]))
            running = self._autoscaling.get(key)
            if not _driven_by_operator(body) or (running is not None and not running.done()):
                continue
            self._autoscaling[key] = self._autoscale_pool.submit(self._autoscale_one, key)
        for key in [key for key, future in self._autoscaling.items() if future.done()]:
            del self._autoscaling[key]

    def _autoscale_one(self, key: Key) -> None:
        try:
            autoscale(self.cluster, self.config, self.memory, *key, post_event=self.post_event)
        except Exception as error:
            self.faults.failed(f"autoscaling: {cause_of(error)}", error)
