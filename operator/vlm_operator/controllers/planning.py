"""Planning against the live cluster: the facts the planner needs, read through the client."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from vlm_operator.api.config import OperatorConfig
from vlm_operator.api.v1alpha1 import VisionModelSpec
from vlm_operator.catalog.gpus import gpu_offers_from_nodes
from vlm_operator.k8s.cluster import Cluster
from vlm_operator.sizing import Plan, plan_visionmodel
from vlm_operator.sizing.engine_args import TRUST_REMOTE_CODE, requests_trust_remote_code


class SpecError(Exception):
    """The spec cannot be acted on; the message says which field and why."""


def architecture_config(
    cluster: Cluster, namespace: str, spec: VisionModelSpec
) -> Mapping[str, Any] | None:
    """The config.json a VisionModel points to with architecture.configMapRef, parsed."""
    architecture = spec.model.architecture
    if architecture is None or architecture.config_map_ref is None:
        return None
    ref = architecture.config_map_ref
    text = cluster.read_config_map_key(namespace, ref.name, ref.key)
    if text is None:
        raise SpecError(
            f"spec.model.architecture.configMapRef: ConfigMap {ref.name} has no key {ref.key}"
        )
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError as error:
        raise SpecError(
            f"spec.model.architecture.configMapRef: {ref.name}/{ref.key} is not JSON: {error}"
        ) from error
    if not isinstance(parsed, dict):
        raise SpecError(
            f"spec.model.architecture.configMapRef: {ref.name}/{ref.key} is not an object"
        )
    return parsed


def check_engine_policy(spec: VisionModelSpec, config: OperatorConfig) -> None:
    """Refuse engine arguments this installation does not allow; raises SpecError."""
    if not config.allow_trust_remote_code and requests_trust_remote_code(spec.engine.extra_args):
        raise SpecError(
            f"spec.engine.extraArgs: {TRUST_REMOTE_CODE} runs Python code from the model "
            "repository, and this operator's configuration does not allow it "
            "(allowTrustRemoteCode: false)"
        )


def plan_for(cluster: Cluster, namespace: str, spec: VisionModelSpec) -> Plan:
    """The plan of one VisionModel on the cluster's GPUs; raises SpecError for a bad reference."""
    config = architecture_config(cluster, namespace, spec)
    offers = gpu_offers_from_nodes(cluster.list_nodes())
    return plan_visionmodel(spec, gpu_offers=offers, architecture_config=config)
