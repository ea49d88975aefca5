"""Planning against the live cluster: the facts the planner needs, read through the client."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

from vlm_operator.api.config import OperatorConfig
from vlm_operator.api.v1alpha1 import VisionModelSpec
from vlm_operator.catalog.gpus import gpu_offers_from_nodes
from vlm_operator.k8s.cluster import Cluster
from vlm_operator.render.labels import VISIONMODEL_LABEL
from vlm_operator.sizing import Plan, plan_visionmodel


class SpecError(Exception):
    """The spec cannot be acted on; the message says which field and why."""


MAX_CONFIG_BYTES = 262_144
"""The most config.json text parsed; real ones are a few KiB."""
MAX_CONFIG_DEPTH = 16
"""The deepest nesting of objects and arrays accepted; real configs nest three or four deep."""
MAX_NUMBER_DIGITS = 20
"""The longest number accepted; architecture facts fit in 64 bits."""


class _OutOfBoundsError(ValueError):
    """A config.json outside the bounds above."""


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_NUMBER_DIGITS:
        raise _OutOfBoundsError(f"holds a {len(text)}-digit integer")
    return int(text)


def _bounded_float(text: str) -> float:
    if len(text) > 4 * MAX_NUMBER_DIGITS:
        raise _OutOfBoundsError(f"holds a {len(text)}-character number")
    value = float(text)
    if not math.isfinite(value) or abs(value) > 1e18:
        raise _OutOfBoundsError(f"holds the number {text}, beyond any architecture fact")
    return value


def _refuse_constant(text: str) -> Any:
    raise _OutOfBoundsError(f"holds {text}, which is not JSON")


_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKET = re.compile(r"[\[\]{}]")


def _nesting_depth(text: str) -> int:
    """The deepest nesting of [ and { outside strings, found without recursion."""
    depth = deepest = 0
    for bracket in _BRACKET.findall(_JSON_STRING.sub("", text)):
        depth += 1 if bracket in "[{" else -1
        deepest = max(deepest, depth)
    return deepest


def parse_config_json(text: str) -> dict[str, Any]:
    """Parse a tenant's config.json within bounds of size, nesting and numbers; ValueError with
    the reason otherwise. Nesting is measured before parsing, so no input can exhaust the
    stack, and numbers are bounded as they are read, so none becomes inf or a huge integer."""
    if len(text.encode("utf-8")) > MAX_CONFIG_BYTES:
        raise ValueError(f"is larger than {MAX_CONFIG_BYTES} bytes")
    depth = _nesting_depth(text)
    if depth > MAX_CONFIG_DEPTH:
        raise ValueError(f"nests {depth} levels deep, more than {MAX_CONFIG_DEPTH}")
    try:
        parsed = json.loads(
            text,
            parse_int=_bounded_int,
            parse_float=_bounded_float,
            parse_constant=_refuse_constant,
        )
    except _OutOfBoundsError:
        raise
    except ValueError as error:
        raise ValueError(f"is not JSON: {error}") from None
    if not isinstance(parsed, dict):
        raise ValueError("is not an object")
    return parsed


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
        return parse_config_json(text)
    except ValueError as error:
        raise SpecError(
            f"spec.model.architecture.configMapRef: {ref.name}/{ref.key} {error}"
        ) from None


def check_engine_policy(spec: VisionModelSpec, config: OperatorConfig) -> None:
    """Refuse, naming the field, the engine arguments this installation does not let through
    (extraArgsAllowed, allowTrustRemoteCode); raises SpecError."""
    refused = config.refused_extra_args(spec.engine.extra_args)
    if refused:
        raise SpecError(
            "; ".join(f"spec.engine.extraArgs[{index}]: {why}" for index, why in refused)
        )


def plan_for(
    cluster: Cluster,
    namespace: str,
    spec: VisionModelSpec,
    *,
    name: str | None = None,
    previous: Mapping[str, Any] | None = None,
    gpu_costs: Mapping[str, float] | None = None,
) -> Plan:
    """The plan of one VisionModel on the cluster's GPUs; raises SpecError for a bad reference.

    Free GPUs are counted from the pods that hold them, leaving out the VisionModel's own pods
    (`name`), so that a model keeps the room it already uses; `previous` is its status.plan."""
    config = architecture_config(cluster, namespace, spec)
    pods = [pod for pod in cluster.list_gpu_pods() if not _owned_by(pod, namespace, name)]
    offers = gpu_offers_from_nodes(cluster.list_nodes(), pods)
    return plan_visionmodel(
        spec,
        gpu_offers=offers,
        architecture_config=config,
        gpu_costs=gpu_costs,
        previous=previous,
    )


def _owned_by(pod: Mapping[str, Any], namespace: str, name: str | None) -> bool:
    metadata = pod.get("metadata") or {}
    labels = metadata.get("labels") or {}
    return (
        name is not None
        and metadata.get("namespace") == namespace
        and labels.get(VISIONMODEL_LABEL) == name
    )
