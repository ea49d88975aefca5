"""The applied-intent annotation and the check that skips writes which would change nothing."""

from __future__ import annotations

from typing import Any

from vlm_operator.controllers.intent import INTENT_ANNOTATION, fingerprint, up_to_date, with_intent

MANIFEST = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "m", "namespace": "n"}}
OURS = {"manager": "vlm-operator", "operation": "Apply", "time": "2026-01-01T00:00:10Z"}


def observed(digest: str, managed: list[dict[str, Any]], generation: int = 1) -> dict[str, Any]:
    return {
        "metadata": {
            "annotations": {INTENT_ANNOTATION: digest},
            "managedFields": managed,
            "generation": generation,
        },
        "spec": {},
    }


def test_the_digest_ignores_key_order_and_the_annotation_is_added() -> None:
    reordered = {"metadata": {"namespace": "n", "name": "m"}, "kind": "Service", "apiVersion": "v1"}
    annotated, digest = with_intent(MANIFEST)
    assert with_intent(reordered)[1] == digest
    assert annotated["metadata"]["annotations"][INTENT_ANNOTATION] == digest
    assert "annotations" not in MANIFEST["metadata"]  # the input is not modified


def test_a_remembered_fingerprint_decides() -> None:
    _, digest = with_intent(MANIFEST)
    applied = observed(digest, [OURS], generation=3)
    remembered = fingerprint("Deployment", applied)
    assert up_to_date("Deployment", applied, digest, remembered)
    assert not up_to_date("Deployment", observed(digest, [OURS], generation=4), digest, remembered)
    assert not up_to_date("Deployment", observed("other", [OURS], 3), digest, remembered)
    assert not up_to_date("Deployment", None, digest, remembered)


def test_without_a_fingerprint_a_newer_foreign_spec_write_needs_an_apply() -> None:
    _, digest = with_intent(MANIFEST)
    edit = {
        "manager": "kubectl",
        "subresource": "scale",
        "time": "2026-01-01T00:02:00Z",
        "fieldsV1": {"f:spec": {"f:replicas": {}}},
    }
    revision = {
        "manager": "kube-controller-manager",
        "operation": "Update",
        "time": "2026-01-01T00:03:00Z",
        "fieldsV1": {"f:metadata": {"f:annotations": {}}},
    }
    status = {"manager": "kcm", "subresource": "status", "time": "2026-01-01T00:04:00Z"}
    assert not up_to_date("Deployment", observed(digest, [OURS, edit]), digest, None)
    assert up_to_date("Deployment", observed(digest, [OURS, revision, status]), digest, None)
