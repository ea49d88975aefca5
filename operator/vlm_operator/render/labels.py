"""Labels and owner references shared by every child object."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vlm_operator.api import constants as c

VISIONMODEL_LABEL = f"{c.GROUP}/visionmodel"


def selector_labels(name: str) -> dict[str, str]:
    """Labels that select one VisionModel's vLLM pods. Stable forever: Deployments can't change
    their selector."""
    return {c.LABEL_NAME: "vllm", VISIONMODEL_LABEL: name}


def selector_string(name: str) -> str:
    """The selector as the scale subresource wants it: a serialized label selector."""
    return ",".join(f"{key}={value}" for key, value in sorted(selector_labels(name).items()))


def common_labels(name: str, engine_version: str) -> dict[str, str]:
    """The recommended app.kubernetes.io labels plus the selector labels."""
    return {
        **selector_labels(name),
        c.LABEL_INSTANCE: name,
        c.LABEL_COMPONENT: "model-server",
        c.LABEL_PART_OF: "vlm-operator",
        c.LABEL_MANAGED_BY: c.FIELD_MANAGER,
        c.LABEL_VERSION: engine_version,
    }


def name_conflict(existing: Mapping[str, Any] | None, uid: str) -> bool:
    """Whether an object read back under a child's name is someone else's: it exists and this
    VisionModel (by uid) is not its controller. Such an object is never changed or adopted."""
    if existing is None:
        return False
    references = existing.get("metadata", {}).get("ownerReferences") or []
    return not any(
        reference.get("uid") == uid and reference.get("controller") for reference in references
    )


def owner_reference(name: str, uid: str) -> dict[str, Any]:
    """The controller owner reference that ties a child to its VisionModel."""
    return {
        "apiVersion": c.API_VERSION,
        "kind": c.KIND,
        "name": name,
        "uid": uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }
