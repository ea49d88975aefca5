"""The applied intent of a child: a digest of what the operator applies, kept as an annotation on
the child, so a reconcile that would change nothing sends no write."""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping
from typing import Any

from vlm_operator.api import constants as c

INTENT_ANNOTATION = f"{c.GROUP}/applied-intent"
"""sha256 of the child as the operator applies it, the annotation itself left out."""


def with_intent(manifest: Mapping[str, Any]) -> tuple[dict[str, Any], str]:
    """The manifest with its intent annotation, and the digest."""
    digest = hashlib.sha256(
        json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()
    annotated = copy.deepcopy(dict(manifest))
    annotations = annotated["metadata"].setdefault("annotations", {})
    annotations[INTENT_ANNOTATION] = digest
    return annotated, digest


GENERATION_KINDS = frozenset({"Deployment", "PodDisruptionBudget"})
"""Kinds whose metadata.generation counts spec changes; for the others (Services) every write
changes the resourceVersion, and nothing but spec writers touches them."""


def fingerprint(kind: str, observed: Mapping[str, Any]) -> str:
    """What changes when anyone changes the child's spec."""
    metadata = observed.get("metadata", {})
    if kind in GENERATION_KINDS:
        return f"generation={metadata.get('generation')}"
    return f"resourceVersion={metadata.get('resourceVersion')}"


def _touches_spec(entry: Mapping[str, Any]) -> bool:
    if entry.get("subresource") == "scale":
        return True
    if entry.get("subresource"):
        return False  # status and other subresources never carry the intent
    return "f:spec" in (entry.get("fieldsV1") or {})


def foreign_spec_write(observed: Mapping[str, Any]) -> bool:
    """Whether another field manager wrote the spec after the operator's own last apply (by
    managedFields times, whole seconds: used only when no fingerprint is remembered)."""
    entries = observed.get("metadata", {}).get("managedFields") or []
    ours = [
        str(entry.get("time", ""))
        for entry in entries
        if entry.get("manager") == c.FIELD_MANAGER and not entry.get("subresource")
    ]
    if not ours:
        return True
    return any(
        str(entry.get("time", "")) > max(ours)
        for entry in entries
        if entry.get("manager") != c.FIELD_MANAGER and _touches_spec(entry)
    )


def up_to_date(
    kind: str, observed: Mapping[str, Any] | None, digest: str, remembered: str | None
) -> bool:
    """Whether the observed child holds this intent and nobody changed its spec since the
    operator's apply: by the fingerprint remembered right after that apply, or, without one
    (the first look after a start or a create), by the times in managedFields."""
    if observed is None:
        return False
    annotations = observed.get("metadata", {}).get("annotations") or {}
    if annotations.get(INTENT_ANNOTATION) != digest:
        return False
    if remembered is not None:
        return fingerprint(kind, observed) == remembered
    return not foreign_spec_write(observed)
