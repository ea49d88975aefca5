"""The vLLM Deployment, its Service, PodDisruptionBudget and PodMonitor."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from vlm_operator.api import constants as c
from vlm_operator.api.config import OperatorConfig
from vlm_operator.api.v1alpha1 import VisionModelSpec
from vlm_operator.catalog.engine import SERVE_PORT
from vlm_operator.render.labels import (
    VISIONMODEL_LABEL,
    common_labels,
    owner_reference,
    selector_labels,
)
from vlm_operator.sizing import Plan

CACHE_MOUNT_PATH = "/models"
PROBE_PERIOD_SECONDS = 10
GPU_TOLERATION = {"key": c.GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}


@dataclass(frozen=True)
class RenderInput:
    """Everything the renderer needs about one VisionModel."""

    name: str
    namespace: str
    uid: str
    spec: VisionModelSpec
    plan: Plan
    config: OperatorConfig


def child_metadata(source: RenderInput) -> dict[str, Any]:
    """Name, namespace, labels and the controller owner reference of a child object."""
    return {
        "name": source.name,
        "namespace": source.namespace,
        "labels": common_labels(source.name, source.config.vllm_version),
        "ownerReferences": [owner_reference(source.name, source.uid)],
    }


def expected_startup_seconds(source: RenderInput) -> float:
    """Expected start of one replica: fetch or load the weights, then engine init."""
    weights_mib = source.plan.weights_gib * source.plan.gpus_per_replica * 1024
    warm_cache = source.spec.model.cache.persistent_volume_claim is not None
    bandwidth = (
        source.config.load_mib_per_second if warm_cache else source.config.download_mib_per_second
    )
    return weights_mib / bandwidth + source.config.engine_init_seconds


def startup_seconds(source: RenderInput) -> int:
    """Worst-case start the probes and the rollout deadline allow for."""
    return math.ceil(expected_startup_seconds(source) * source.config.startup_safety_factor)


def shm_size_gib(tensor_parallel_size: int) -> int:
    """Shared memory for NCCL between tensor-parallel ranks; one rank needs little."""
    return 2 if tensor_parallel_size == 1 else min(32, 4 * tensor_parallel_size)


def escape_expansion(text: str) -> str:
    """`text` as the kubelet must see it to pass it on literally: it expands $(VAR) in args and
    env values and turns $$ into $, so every $ is doubled and no reference survives."""
    return text.replace("$", "$$")


def _env(source: RenderInput) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [{"name": "HF_HOME", "value": f"{CACHE_MOUNT_PATH}/hf"}]
    token = source.spec.model.token_secret_ref
    if token is not None:
        env.append(
            {
                "name": "HF_TOKEN",
                "valueFrom": {"secretKeyRef": {"name": token.name, "key": token.key}},
            }
        )
    env.extend(
        {"name": var.name, "value": escape_expansion(var.value)} for var in source.spec.engine.env
    )
    return env


def _volumes(source: RenderInput) -> list[dict[str, Any]]:
    shm = {"medium": "Memory", "sizeLimit": f"{shm_size_gib(source.plan.tensor_parallel_size)}Gi"}
    cache = source.spec.model.cache
    cache_volume: dict[str, Any] = (
        {"persistentVolumeClaim": {"claimName": cache.persistent_volume_claim}}
        if cache.persistent_volume_claim is not None
        else {"emptyDir": {"sizeLimit": cache.size_limit}}
    )
    return [{"name": "shm", "emptyDir": shm}, {"name": "model-cache", **cache_volume}]


def _resources(source: RenderInput) -> dict[str, Any]:
    gpus = source.plan.gpus_per_replica
    # Host memory must hold a rank's weights while they stream to the GPU, plus shared memory.
    weights_per_gpu_gib = math.ceil(source.plan.weights_gib)
    memory_gib = 16 + weights_per_gpu_gib + shm_size_gib(source.plan.tensor_parallel_size)
    requests = {"cpu": str(max(4, 2 * gpus)), "memory": f"{memory_gib}Gi", c.GPU_RESOURCE: gpus}
    limits = {"memory": f"{memory_gib}Gi", c.GPU_RESOURCE: gpus}
    return {"requests": requests, "limits": limits}


def _probes(source: RenderInput) -> dict[str, Any]:
    http_get = {"path": "/health", "port": "http"}
    startup_failures = math.ceil(startup_seconds(source) / PROBE_PERIOD_SECONDS)
    return {
        "startupProbe": {
            "httpGet": http_get,
            "periodSeconds": PROBE_PERIOD_SECONDS,
            "failureThreshold": startup_failures,
        },
        "readinessProbe": {"httpGet": http_get, "periodSeconds": 5, "failureThreshold": 3},
        "livenessProbe": {
            "httpGet": http_get,
            "periodSeconds": 20,
            "timeoutSeconds": 10,
            "failureThreshold": 3,
        },
    }


def render_deployment(source: RenderInput) -> dict[str, Any]:
    """The vLLM Deployment of one VisionModel."""
    spec = source.spec
    container = {
        "name": "vllm",
        "image": spec.engine.image or source.config.vllm_image,
        "command": ["vllm", "serve"],
        "args": [
            escape_expansion(arg) for arg in (*source.plan.engine_args, *spec.engine.extra_args)
        ],
        "env": _env(source),
        "ports": [{"name": "http", "containerPort": SERVE_PORT, "protocol": "TCP"}],
        "resources": _resources(source),
        "volumeMounts": [
            {"name": "shm", "mountPath": "/dev/shm"},
            {"name": "model-cache", "mountPath": CACHE_MOUNT_PATH},
        ],
        **_probes(source),
    }
    pod_spec: dict[str, Any] = {
        "containers": [container],
        "volumes": _volumes(source),
        "nodeSelector": {
            **spec.hardware.node_selector,
            c.GPU_PRODUCT_LABEL: source.plan.gpu_product,
        },
        "tolerations": [
            GPU_TOLERATION,
            *(
                toleration.model_dump(by_alias=True, exclude_none=True)
                for toleration in spec.hardware.tolerations
            ),
        ],
        "terminationGracePeriodSeconds": 60,
    }
    if spec.hardware.affinity is not None:
        pod_spec["affinity"] = spec.hardware.affinity.model_dump(
            by_alias=True, exclude_none=True, exclude_defaults=True
        )
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": child_metadata(source),
        "spec": {
            "replicas": spec.replicas,
            "selector": {"matchLabels": selector_labels(source.name)},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
            },
            "progressDeadlineSeconds": startup_seconds(source) + 300,
            "template": {
                "metadata": {"labels": common_labels(source.name, source.config.vllm_version)},
                "spec": pod_spec,
            },
        },
    }


def render_service(source: RenderInput) -> dict[str, Any]:
    """The Service in front of the vLLM pods, with the named port http."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": child_metadata(source),
        "spec": {
            "type": source.spec.service.type,
            "selector": selector_labels(source.name),
            "ports": [
                {
                    "name": "http",
                    "port": source.spec.service.port,
                    "targetPort": "http",
                    "protocol": "TCP",
                }
            ],
        },
    }


def render_disruption_budget(source: RenderInput) -> dict[str, Any]:
    """A PodDisruptionBudget: voluntary evictions take at most one replica at a time."""
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": child_metadata(source),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector_labels(source.name)}},
    }


def render_pod_monitor(source: RenderInput) -> dict[str, Any]:
    """A Prometheus-operator PodMonitor scraping vLLM's /metrics."""
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PodMonitor",
        "metadata": child_metadata(source),
        "spec": {
            "selector": {"matchLabels": selector_labels(source.name)},
            "podMetricsEndpoints": [{"port": "http", "path": "/metrics"}],
            # Becomes the Prometheus label vlm_operator_io_visionmodel, which the HPA driver's
            # external metric selects on.
            "podTargetLabels": [VISIONMODEL_LABEL],
        },
    }


def render_children(source: RenderInput, *, pod_monitor: bool) -> list[dict[str, Any]]:
    """Every child object of one VisionModel, in apply order."""
    children = [
        render_service(source),
        render_disruption_budget(source),
        render_deployment(source),
    ]
    if pod_monitor:
        children.append(render_pod_monitor(source))
    return children
