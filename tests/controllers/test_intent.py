"""The applied-intent annotation and the check that skips writes which would change nothing."""

from __future__ import annotations

from typing import Any

from vlm_operator.controllers.intent import INTENT_ANNOTATION, up_to_date, with_intent

MANIFEST = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "m", "namespace": "n"}}


def observed(digest: str, managed: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "metadata": {"annotations": {INTENT_ANNOTATION: digest}, "managedFields": managed},
        "spec": {},
    }


OURS = {"manager": "vlm-operator", "operation": "Apply", "time": "2026-01-01T00:00:10Z"}


def test_the_digest_ignores_key_order_and_the_annotation_is_added() -> None:
    reordered = {"metadata": {"namespace": "n", "name": "m"}, "kind": "Service", "apiVersion": "v1"}
    annotated, digest = with_intent(MANIFEST)
    assert with_intent(reordered)[1] == digest
    assert annotated["metadata"]["annotations"][INTENT_ANNOTATION] == digest
    assert "annotations" not in MANIFEST["metadata"]  # the input is not modified


def test_same_intent_and_no_foreign_write_is_up_to_date() -> None:
    _, digest = with_intent(MANIFEST)
    status_write = {"manager": "kcm", "subresource": "status", "time": "2026-01-01T00:01:00Z"}
    assert up_to_date(observed(digest, [OURS, status_write]), digest, None)
    assert not up_to_date(observed("other", [OURS]), digest, None)
    assert not up_to_date(None, digest, None)


def test_a_newer_foreign_spec_write_needs_an_apply_once() -> None:
    _, digest = with_intent(MANIFEST)
    edit = {
        "manager": "kubectl-edit",
        "operation": "Update",
        "time": "2026-01-01T00:02:00Z",
        "fieldsV1": {"f:spec": {"f:replicas": {}}},
    }
    assert not up_to_date(observed(digest, [OURS, edit]), digest, None)
    # Once the operator answered that write, it is not answered again.
    assert up_to_date(observed(digest, [OURS, edit]), digest, "2026-01-01T00:02:00Z")
    revision = {
        "manager": "kube-controller-manager",
        "operation": "Update",
        "time": "2026-01-01T00:03:00Z",
        "fieldsV1": {"f:metadata": {"f:annotations": {}}},
    }
    assert up_to_date(observed(digest, [OURS, revision]), digest, None)
