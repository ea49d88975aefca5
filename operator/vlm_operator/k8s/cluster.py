"""The only code that talks to the API server: server-side apply, reads and status writes.

Reads of the kinds the operator watches (VisionModels, their Deployments, Services and
PodDisruptionBudgets, Nodes) are served from the watch-fed cache once it is seeded; writes go to
the API server and their responses refresh the cache. Every request has a timeout and no hidden
retries: the work queue retries, with backoff per object."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, cast

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from vlm_operator.api import constants as c
from vlm_operator.k8s.cache import WatchCache
from vlm_operator.k8s.errors import RefusedError, refusal

APPLY_CONTENT_TYPE = "application/apply-patch+yaml"
MERGE_CONTENT_TYPE = "application/merge-patch+json"

REQUEST_TIMEOUT = (5.0, 20.0)
"""Seconds to connect and to read one answer: a stopped API server or etcd fails a request
instead of holding a worker."""

GPU_POD_SNAPSHOT_SECONDS = 2.0
"""How long one cluster-wide list of unfinished pods serves every plan: a list per reconcile,
decoded into the client's models, was nine tenths of the operator's CPU at 1,000 VisionModels."""

PEERING_GROUP, PEERING_VERSION = "kopf.dev", "v1"
"""The API of kopf's peering kinds."""

CRD_CACHE_SECONDS = 60.0
"""How long a CustomResourceDefinition's presence is trusted before it is read again."""

# Plural resource names of the kinds the operator reads and writes.
PLURALS = {
    c.KIND: c.PLURAL,
    "Deployment": "deployments",
    "Service": "services",
    "PodDisruptionBudget": "poddisruptionbudgets",
    "Pod": "pods",
    "PodMonitor": "podmonitors",
    "ScaledObject": "scaledobjects",
    "HorizontalPodAutoscaler": "horizontalpodautoscalers",
}


SEEDED_KINDS = (
    (c.API_VERSION, c.KIND),
    ("apps/v1", "Deployment"),
    ("v1", "Service"),
    ("policy/v1", "PodDisruptionBudget"),
    ("v1", "Pod"),
    ("autoscaling/v2", "HorizontalPodAutoscaler"),
)
"""The namespaced kinds read from the cache (Nodes are too). All but HorizontalPodAutoscalers are
watched; those only the operator creates and deletes, so the list at start-up and the operator's
own writes keep their entries."""


def _split_api_version(api_version: str) -> tuple[str, str]:
    group, _, version = api_version.rpartition("/")
    return group, version


class Cluster:
    """A thin, typed facade over the Kubernetes client for the operator's few operations."""

    def __init__(self, api_client: client.ApiClient, cache: WatchCache | None = None) -> None:
        self._api = api_client
        self.cache = cache if cache is not None else WatchCache()
        self._core = client.CoreV1Api(api_client)
        self._objects = client.CustomObjectsApi(api_client)
        self._extensions = client.ApiextensionsV1Api(api_client)
        self._crds_seen: dict[str, tuple[float, bool]] = {}
        self._gpu_pods: tuple[float, list[dict[str, Any]]] | None = None
        self._gpu_pods_guard = threading.Lock()

    @classmethod
    def connect(cls) -> Cluster:
        """Connect with the in-cluster service account, or else the current kubeconfig."""
        configuration = client.Configuration()
        try:
            config.load_incluster_config(client_configuration=configuration)
        except config.ConfigException:
            config.load_kube_config(client_configuration=configuration)
        configuration.retries = False  # the work queue retries, with backoff per object
        return cls(client.ApiClient(configuration))

    def _serialized(self, response: Any) -> dict[str, Any]:
        if isinstance(response, dict):
            return response
        return cast(dict[str, Any], self._api.sanitize_for_serialization(response))

    def apply(self, manifest: Mapping[str, Any]) -> dict[str, Any] | None:
        """Server-side apply one namespaced object with the operator's field manager; returns
        the object as the API server stored it (None when it was created: the client decodes
        only 200 answers of custom objects, and the watch delivers it). An error answer raises
        RefusedError."""
        metadata = manifest["metadata"]
        group, version = _split_api_version(manifest["apiVersion"])
        plural = PLURALS[manifest["kind"]]
        options: dict[str, Any] = {
            "field_manager": c.FIELD_MANAGER,
            "force": True,
            "_content_type": APPLY_CONTENT_TYPE,
            "_request_timeout": REQUEST_TIMEOUT,
        }
        if not group and manifest["kind"] != "Service":
            raise ValueError(f"unsupported core kind {manifest['kind']}")
        response: Any
        try:
            if not group:
                response = self._core.patch_namespaced_service(
                    metadata["name"], metadata["namespace"], dict(manifest), **options
                )
            else:
                response = self._objects.patch_namespaced_custom_object(
                    group,
                    version,
                    metadata["namespace"],
                    plural,
                    metadata["name"],
                    dict(manifest),
                    **options,
                )
        except ApiException as error:
            if not error.status:
                raise
            raise RefusedError(refusal(error)) from error
        if response is None:
            return None
        applied = self._serialized(response)
        if self.cache.synced(manifest["kind"]):
            self.cache.put(manifest["kind"], applied)
        return applied

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """Read one object (of a non-core group, or a Service; from the cache when the kind is
        watched), or None when it does not exist."""
        if self.cache.synced(kind):
            return self.cache.get(kind, namespace, name)
        return self.read(api_version, kind, namespace, name)

    def read(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """Read one object from the API server itself, past the cache (which holds only the
        operator's own children), or None when it does not exist."""
        group, version = _split_api_version(api_version)
        try:
            if not group and kind == "Service":
                service = self._core.read_namespaced_service(
                    name, namespace, _request_timeout=REQUEST_TIMEOUT
                )
                return self._serialized(service)
            found = self._objects.get_namespaced_custom_object(
                group, version, namespace, PLURALS[kind], name, _request_timeout=REQUEST_TIMEOUT
            )
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        return cast(dict[str, Any], found)

    def delete(self, api_version: str, kind: str, namespace: str, name: str) -> None:
        """Delete one object of a non-core group; a missing one is fine."""
        group, version = _split_api_version(api_version)
        try:
            self._objects.delete_namespaced_custom_object(
                group, version, namespace, PLURALS[kind], name, _request_timeout=REQUEST_TIMEOUT
            )
        except ApiException as error:
            if error.status != 404:
                raise
        self.cache.remove(kind, namespace, name)

    def get_visionmodel(self, namespace: str, name: str) -> dict[str, Any] | None:
        """Read one VisionModel, or None when it is gone."""
        return self.get(c.API_VERSION, c.KIND, namespace, name)

    def list_nodes(self) -> list[dict[str, Any]]:
        """Every Node, as plain dicts: from the cache once it is seeded (shared, read-only)."""
        if self.cache.synced("Node"):
            return list(self.cache.snapshot("Node"))
        nodes = self._core.list_node(_request_timeout=REQUEST_TIMEOUT)
        return list(self._serialized(nodes).get("items", []))

    def seed_cache(self, namespaces: list[str]) -> None:
        """List Nodes, VisionModels and the operator's children once, before the watches start,
        so reads are served from the cache from the first reconcile on (every namespace when
        none is given)."""
        self.cache.replace_all("Node", list(self.list_nodes()))
        children = f"{c.LABEL_MANAGED_BY}={c.FIELD_MANAGER}"
        for api_version, kind in SEEDED_KINDS:
            selector = "" if kind == c.KIND else children
            items: list[Mapping[str, Any]] = []
            scopes: list[str | None] = list(namespaces) or [None]
            for namespace in scopes:
                items += self._list(api_version, kind, namespace, selector)
            self.cache.replace_all(kind, items)

    def _list(
        self, api_version: str, kind: str, namespace: str | None, selector: str
    ) -> list[dict[str, Any]]:
        options: dict[str, Any] = {"label_selector": selector, "_request_timeout": REQUEST_TIMEOUT}
        group, version = _split_api_version(api_version)
        found: Any
        if not group and kind == "Pod":
            found = (
                self._core.list_namespaced_pod(namespace, **options)
                if namespace
                else self._core.list_pod_for_all_namespaces(**options)
            )
        elif not group:
            found = (
                self._core.list_namespaced_service(namespace, **options)
                if namespace
                else self._core.list_service_for_all_namespaces(**options)
            )
        elif namespace:
            found = self._objects.list_namespaced_custom_object(
                group, version, namespace, PLURALS[kind], **options
            )
        else:
            found = self._objects.list_cluster_custom_object(
                group, version, PLURALS[kind], **options
            )
        items = list(self._serialized(found).get("items", []))
        for item in items:  # list responses leave kind and apiVersion off their items
            item.setdefault("kind", kind)
            item.setdefault("apiVersion", api_version)
        return items

    def _pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        """The selected pods (a selector of key=value pairs), from the cache once seeded."""
        if self.cache.synced("Pod"):
            wanted = dict(pair.split("=", 1) for pair in selector.split(",") if pair)
            return [
                pod
                for pod in self.cache.snapshot("Pod")
                if pod.get("metadata", {}).get("namespace") == namespace
                and wanted.items() <= (pod["metadata"].get("labels") or {}).items()
            ]
        return self._list("v1", "Pod", namespace, selector)

    def list_gpu_pods(self) -> list[dict[str, Any]]:
        """Every pod not yet finished, in all namespaces, as plain dicts: what holds GPUs. One
        list, read as JSON without the client's models, serves all callers for
        GPU_POD_SNAPSHOT_SECONDS; callers must not modify it."""
        with self._gpu_pods_guard:  # concurrent planners wait for one list instead of each listing
            now = time.monotonic()
            if self._gpu_pods is not None and now - self._gpu_pods[0] < GPU_POD_SNAPSHOT_SECONDS:
                return self._gpu_pods[1]
            response: Any = self._core.list_pod_for_all_namespaces(
                field_selector="status.phase!=Succeeded,status.phase!=Failed",
                _request_timeout=REQUEST_TIMEOUT,
                _preload_content=False,
            )
            pods: list[dict[str, Any]] = json.loads(response.data).get("items") or []
            self._gpu_pods = (now, pods)
            return pods

    def unschedulable_pods(self, namespace: str, selector: str) -> list[str]:
        """Scheduler messages of the selected pods that cannot be placed."""
        messages = []
        for pod in self._pods(namespace, selector):
            for condition in pod.get("status", {}).get("conditions") or []:
                if (
                    condition.get("type") == "PodScheduled"
                    and condition.get("status") == "False"
                    and condition.get("reason") == "Unschedulable"
                ):
                    messages.append(str(condition.get("message") or "unschedulable"))
        return messages

    def ready_pod_addresses(self, namespace: str, selector: str) -> dict[str, str]:
        """Pod name to IP of the selected pods that are Ready."""
        addresses = {}
        for pod in self._pods(namespace, selector):
            status = pod.get("status", {})
            conditions = status.get("conditions") or []
            if status.get("podIP") and any(
                c.get("type") == "Ready" and c.get("status") == "True" for c in conditions
            ):
                addresses[str(pod["metadata"]["name"])] = str(status["podIP"])
        return addresses

    def read_config_map_key(self, namespace: str, name: str, key: str) -> str | None:
        """One key of a ConfigMap, or None when the ConfigMap or the key is missing."""
        try:
            config_map = self._core.read_namespaced_config_map(
                name, namespace, _request_timeout=REQUEST_TIMEOUT
            )
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        data = config_map.data or {}
        value = data.get(key)
        return None if value is None else str(value)

    def has_crd(self, name: str) -> bool:
        """Whether a CustomResourceDefinition is installed, by its full name. Every reconcile
        asks, so the answer is kept for CRD_CACHE_SECONDS instead of read each time."""
        now = time.monotonic()
        seen = self._crds_seen.get(name)
        if seen is not None and now - seen[0] < CRD_CACHE_SECONDS:
            return seen[1]
        try:
            self._extensions.read_custom_resource_definition(name, _request_timeout=REQUEST_TIMEOUT)
            installed = True
        except ApiException as error:
            if error.status != 404:
                raise
            installed = False
        self._crds_seen[name] = (now, installed)
        return installed

    def peering_exists(self, name: str, namespace: str | None) -> bool:
        """Whether kopf's peering object exists: the ClusterKopfPeering of that name, or the
        KopfPeering in the namespace. A missing peering kind counts as missing."""
        return self.peers(name, namespace) is not None

    def peers(self, name: str, namespace: str | None) -> dict[str, Any] | None:
        """The keep-alives in kopf's peering object (identity -> priority, lastseen, lifetime),
        or None when the object or its kind is missing."""
        try:
            if namespace is None:
                found = self._objects.get_cluster_custom_object(
                    PEERING_GROUP,
                    PEERING_VERSION,
                    "clusterkopfpeerings",
                    name,
                    _request_timeout=REQUEST_TIMEOUT,
                )
            else:
                found = self._objects.get_namespaced_custom_object(
                    PEERING_GROUP,
                    PEERING_VERSION,
                    namespace,
                    "kopfpeerings",
                    name,
                    _request_timeout=REQUEST_TIMEOUT,
                )
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        return dict(cast(dict[str, Any], found).get("status") or {})

    def patch_visionmodel_status(
        self, namespace: str, name: str, status: Mapping[str, Any]
    ) -> None:
        """Merge-patch the status subresource; lists in it are replaced whole."""
        response = self._objects.patch_namespaced_custom_object_status(
            c.GROUP,
            c.VERSION,
            namespace,
            c.PLURAL,
            name,
            {"status": dict(status)},
            _content_type=MERGE_CONTENT_TYPE,
            _request_timeout=REQUEST_TIMEOUT,
        )
        if self.cache.synced(c.KIND):
            self.cache.put(c.KIND, self._serialized(response))

    def post_event(
        self, involved: Mapping[str, Any], event_type: str, reason: str, message: str
    ) -> None:
        """Create a core/v1 Event about an object, as kubectl describe shows them."""
        metadata = involved.get("metadata", {})
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        event: Any = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "generateName": f"{metadata['name']}.",
                "namespace": metadata["namespace"],
            },
            "involvedObject": {
                "apiVersion": involved.get("apiVersion", c.API_VERSION),
                "kind": involved.get("kind", c.KIND),
                "name": metadata["name"],
                "namespace": metadata["namespace"],
                "uid": metadata.get("uid"),
            },
            "type": event_type,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": c.FIELD_MANAGER},
            "reportingComponent": c.FIELD_MANAGER,
            "reportingInstance": socket.gethostname(),
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        self._core.create_namespaced_event(
            metadata["namespace"], event, _request_timeout=REQUEST_TIMEOUT
        )

    def scale_visionmodel(self, namespace: str, name: str, replicas: int) -> None:
        """Write spec.replicas through the scale subresource, as kubectl scale does."""
        self._objects.patch_namespaced_custom_object_scale(
            c.GROUP,
            c.VERSION,
            namespace,
            c.PLURAL,
            name,
            {"spec": {"replicas": replicas}},
            _content_type=MERGE_CONTENT_TYPE,
            _request_timeout=REQUEST_TIMEOUT,
        )
