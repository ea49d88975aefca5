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


def _touches_spec(entry: Mapping[str, Any]) -> bool:
    if entry.get("subresource") == "scale":
        return True
    if entry.get("subresource"):
        return False  # status and other subresources never carry the intent
    return "f:spec" in (entry.get("fieldsV1") or {})


def foreign_spec_write(observed: Mapping[str, Any]) -> str:
    """The time of the newest write to the spec by another field manager that is newer than the
    operator's own apply ("" when there is none): someone changed what the operator owns."""
    entries = observed.get("metadata", {}).get("managedFields") or []
    ours = [
        str(entry.get("time", ""))
        for entry in entries
        if entry.get("manager") == c.FIELD_MANAGER and not entry.get("subresource")
    ]
    if not ours:
        return "~"  # never applied by the operator: sorts after every timestamp
    theirs = [
        str(entry.get("time", ""))
        for entry in entries
        if entry.get("manager") != c.FIELD_MANAGER and _touches_spec(entry)
    ]
    newer = [time for time in theirs if time > max(ours)]
    return max(newer, default="")


def up_to_date(observed: Mapping[str, Any] | None, digest: str, repaired: str | None) -> bool:
    """Whether the observed child already holds this intent and nobody else changed its spec
    since, except a change the operator already answered with an apply (`repaired` is the
    foreign write time it answered; applying again would change nothing)."""
    if observed is None:
        return False
    annotations = observed.get("metadata", {}).get("annotations") or {}
    if annotations.get(INTENT_ANNOTATION) != digest:
        return False
    foreign = foreign_spec_write(observed)
    return foreign == "" or foreign == repaired
