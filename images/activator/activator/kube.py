"""The activator's view of its VisionModel in the Kubernetes API: read, and raise 0 -> 1 only."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, cast

GROUP, VERSION, PLURAL = "vlm-operator.io", "v1alpha1", "visionmodels"


@dataclass(frozen=True)
class ModelState:
    """What the activator needs to know about its VisionModel."""

    spec_replicas: int
    ready_replicas: int
    wake_on_request: bool


class ScaleTarget(Protocol):
    """A VisionModel the activator may wake."""

    def state(self) -> ModelState:
        """The VisionModel's replicas and whether it opted in to waking on request."""
        ...

    def wake(self) -> bool:
        """Raise spec.replicas from 0 to 1; False when it was no longer 0 (nothing written)."""
        ...


class KubernetesTarget:
    """A VisionModel and its Deployment, through the API server (blocking calls)."""

    def __init__(self, namespace: str, name: str, kubeconfig: str | None = None) -> None:
        from kubernetes import client, config

        if kubeconfig:
            config.load_kube_config(config_file=kubeconfig)
        else:
            config.load_incluster_config()
        self.namespace, self.name = namespace, name
        self._objects = client.CustomObjectsApi()
        self._apps = client.AppsV1Api()
        self._api_exception: type[Exception] = client.ApiException

    def state(self) -> ModelState:
        """Read the VisionModel's spec and its Deployment's ready replicas."""
        body = cast(
            dict[str, Any],
            self._objects.get_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, self.name
            ),
        )
        spec = body.get("spec", {})
        try:
            deployment = self._apps.read_namespaced_deployment_status(self.name, self.namespace)
            status = deployment.status
            ready = int((status.ready_replicas if status is not None else 0) or 0)
        except self._api_exception as error:
            if getattr(error, "status", None) != 404:
                raise
            ready = 0
        return ModelState(
            spec_replicas=int(spec.get("replicas", 1)),
            ready_replicas=ready,
            wake_on_request=bool(spec.get("scaling", {}).get("wakeOnRequest", False)),
        )

    def wake(self) -> bool:
        """Replace the scale subresource at its resourceVersion, so a concurrent writer wins."""
        scale = cast(
            dict[str, Any],
            self._objects.get_namespaced_custom_object_scale(
                GROUP, VERSION, self.namespace, PLURAL, self.name
            ),
        )
        if int(scale.get("spec", {}).get("replicas", 0)) != 0:
            return False
        scale["spec"]["replicas"] = 1
        try:
            self._objects.replace_namespaced_custom_object_scale(
                GROUP, VERSION, self.namespace, PLURAL, self.name, scale
            )
        except self._api_exception as error:
            if getattr(error, "status", None) == 409:
                return False  # someone scaled it meanwhile
            raise
        return True
