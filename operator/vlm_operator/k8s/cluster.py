"""The only code that talks to the API server: server-side apply, reads and status writes."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, cast

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from vlm_operator.api import constants as c

APPLY_CONTENT_TYPE = "application/apply-patch+yaml"
MERGE_CONTENT_TYPE = "application/merge-patch+json"

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
    "PodMonitor": "podmonitors",
    "ScaledObject": "scaledobjects",
    "HorizontalPodAutoscaler": "horizontalpodautoscalers",
}


def _split_api_version(api_version: str) -> tuple[str, str]:
    group, _, version = api_version.rpartition("/")
    return group, version


class Cluster:
    """A thin, typed facade over the Kubernetes client for the operator's few operations."""

    def __init__(self, api_client: client.ApiClient) -> None:
        self._api = api_client
        self._core = client.CoreV1Api(api_client)
        self._objects = client.CustomObjectsApi(api_client)
        self._extensions = client.ApiextensionsV1Api(api_client)
        self._crds_seen: dict[str, tuple[float, bool]] = {}

    @classmethod
    def connect(cls) -> Cluster:
        """Connect with the in-cluster service account, or else the current kubeconfig."""
        try:
            config.load_incluster_config()
        except config.ConfigException:
            config.load_kube_config()
        return cls(client.ApiClient())

    def apply(self, manifest: Mapping[str, Any]) -> None:
        """Server-side apply one namespaced object with the operator's field manager."""
        metadata = manifest["metadata"]
        group, version = _split_api_version(manifest["apiVersion"])
        plural = PLURALS[manifest["kind"]]
        options: dict[str, Any] = {
            "field_manager": c.FIELD_MANAGER,
            "force": True,
            "_content_type": APPLY_CONTENT_TYPE,
        }
        if not group:
            if manifest["kind"] != "Service":
                raise ValueError(f"unsupported core kind {manifest['kind']}")
            self._core.patch_namespaced_service(
                metadata["name"], metadata["namespace"], dict(manifest), **options
            )
            return
        self._objects.patch_namespaced_custom_object(
            group,
            version,
            metadata["namespace"],
            plural,
            metadata["name"],
            dict(manifest),
            **options,
        )

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """Read one object (of a non-core group, or a Service), or None when it does not exist."""
        group, version = _split_api_version(api_version)
        try:
            if not group and kind == "Service":
                service = self._core.read_namespaced_service(name, namespace)
                return cast(dict[str, Any], self._api.sanitize_for_serialization(service))
            found = self._objects.get_namespaced_custom_object(
                group, version, namespace, PLURALS[kind], name
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
                group, version, namespace, PLURALS[kind], name
            )
        except ApiException as error:
            if error.status != 404:
                raise

    def get_visionmodel(self, namespace: str, name: str) -> dict[str, Any] | None:
        """Read one VisionModel, or None when it is gone."""
        return self.get(c.API_VERSION, c.KIND, namespace, name)

    def list_nodes(self) -> list[dict[str, Any]]:
        """Every Node, as plain dicts."""
        nodes = self._core.list_node()
        serialized = cast(dict[str, Any], self._api.sanitize_for_serialization(nodes))
        return list(serialized.get("items", []))

    def list_gpu_pods(self) -> list[dict[str, Any]]:
        """Every pod not yet finished, in all namespaces, as plain dicts: what holds GPUs."""
        pods = self._core.list_pod_for_all_namespaces(
            field_selector="status.phase!=Succeeded,status.phase!=Failed"
        )
        serialized = cast(dict[str, Any], self._api.sanitize_for_serialization(pods))
        return list(serialized.get("items", []))

    def unschedulable_pods(self, namespace: str, selector: str) -> list[str]:
        """Scheduler messages of the selected pods that cannot be placed."""
        pods = self._core.list_namespaced_pod(namespace, label_selector=selector)
        messages = []
        for pod in pods.items:
            conditions = pod.status.conditions if pod.status is not None else None
            for condition in conditions or []:
                if (
                    condition.type == "PodScheduled"
                    and condition.status == "False"
                    and condition.reason == "Unschedulable"
                ):
                    messages.append(str(condition.message or "unschedulable"))
        return messages

    def ready_pod_addresses(self, namespace: str, selector: str) -> dict[str, str]:
        """Pod name to IP of the selected pods that are Ready."""
        pods = self._core.list_namespaced_pod(namespace, label_selector=selector)
        addresses = {}
        for pod in pods.items:
            status = pod.status
            if status is None or not status.pod_ip or pod.metadata is None:
                continue
            if any(c.type == "Ready" and c.status == "True" for c in status.conditions or []):
                addresses[str(pod.metadata.name)] = str(status.pod_ip)
        return addresses

    def read_config_map_key(self, namespace: str, name: str, key: str) -> str | None:
        """One key of a ConfigMap, or None when the ConfigMap or the key is missing."""
        try:
            config_map = self._core.read_namespaced_config_map(name, namespace)
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
            self._extensions.read_custom_resource_definition(name)
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
        try:
            if namespace is None:
                self._objects.get_cluster_custom_object(
                    PEERING_GROUP, PEERING_VERSION, "clusterkopfpeerings", name
                )
            else:
                self._objects.get_namespaced_custom_object(
                    PEERING_GROUP, PEERING_VERSION, namespace, "kopfpeerings", name
                )
        except ApiException as error:
            if error.status == 404:
                return False
            raise
        return True

    def patch_visionmodel_status(
        self, namespace: str, name: str, status: Mapping[str, Any]
    ) -> None:
        """Merge-patch the status subresource; lists in it are replaced whole."""
        self._objects.patch_namespaced_custom_object_status(
            c.GROUP,
            c.VERSION,
            namespace,
            c.PLURAL,
            name,
            {"status": dict(status)},
            _content_type=MERGE_CONTENT_TYPE,
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
        )
