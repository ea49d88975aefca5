"""Every refused child reaches status: the API server itself refuses (invalid object, exceeded
quota), the condition carries its reason and message, a Warning event is posted, the children
that can be applied still are, and a serving Deployment is left alone."""

from __future__ import annotations

import json
from typing import Any

import pytest

from harness import (
    OperatorProcess,
    apply_manifest,
    condition,
    get_object,
    kubectl,
    kubectl_result,
    list_objects,
    visionmodel,
    wait_condition,
    wait_for,
    wait_ready,
)

pytestmark = pytest.mark.e2e

BOGUS_AFFINITY = {
    "nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In"}]}]
        }
    }
}


def service_quota(namespace: str, name: str, services: int) -> dict[str, Any]:
    """A ResourceQuota that lets the namespace hold this many Services."""
    return {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"hard": {"services": str(services)}},
    }


def warning_reasons(namespace: str) -> set[str]:
    events = list_objects("event", namespace, field_selector="involvedObject.kind=VisionModel")
    return {event["reason"] for event in events if event["type"] == "Warning"}


def server_refusal(namespace: str, manifest: dict[str, Any]) -> str:
    """What the API server answers kubectl for the same object: the independent expectation."""
    result = kubectl_result(
        "apply", "--dry-run=server", "-f", "-", "-n", namespace, input_text=json.dumps(manifest)
    )
    assert result.returncode != 0, "the API server accepted the object"
    return result.stderr.strip()


def test_an_invalid_affinity_stalls_with_the_api_servers_message_and_keeps_serving(
    namespace: str, operator: OperatorProcess
) -> None:
    apply_manifest(visionmodel(namespace, replicas=1))
    wait_ready(namespace)
    before = get_object("deployment", "qwen-vl", namespace)
    assert before is not None
    hardware = {"gpuProduct": "auto", "maxGpusPerReplica": 2, "affinity": BOGUS_AFFINITY}
    apply_manifest(visionmodel(namespace, replicas=1, hardware=hardware))

    body = wait_condition(namespace, "Stalled", "DeploymentInvalid")
    message = condition(body, "Stalled")["message"]
    broken = json.loads(json.dumps(before))
    broken["spec"]["template"]["spec"]["affinity"] = BOGUS_AFFINITY
    broken["metadata"] = {"name": "probe", "namespace": namespace}
    refused = server_refusal(namespace, broken)
    detail = refused.split(" is invalid: ", 1)[1]
    assert detail in message, (detail, message)
    assert condition(body, "Ready")["status"] == "False"
    assert "DeploymentInvalid" in warning_reasons(namespace)
    after = get_object("deployment", "qwen-vl", namespace)
    assert after is not None
    assert after["metadata"]["generation"] == before["metadata"]["generation"]
    assert after["status"].get("readyReplicas") == 1

    apply_manifest(visionmodel(namespace, replicas=1))
    wait_ready(namespace)


def test_an_exceeded_quota_applies_the_other_children_and_recovers(
    namespace: str, operator: OperatorProcess
) -> None:
    apply_manifest(service_quota(namespace, "no-services", 0))
    wait_for(
        lambda: (
            (get_object("resourcequota", "no-services", namespace) or {})
            .get("status", {})
            .get("hard")
        ),
        30,
        "the quota controller to publish the quota",
    )
    apply_manifest(visionmodel(namespace))
    body = wait_condition(namespace, "Stalled", "ServiceForbidden")
    message = condition(body, "Stalled")["message"]
    assert "exceeded quota: no-services" in message
    assert "ServiceForbidden" in warning_reasons(namespace)
    # The other children were still applied.
    assert get_object("deployment", "qwen-vl", namespace) is not None
    assert get_object("poddisruptionbudget", "qwen-vl", namespace) is not None
    assert get_object("service", "qwen-vl", namespace) is None

    kubectl("delete", "resourcequota", "no-services", "-n", namespace)
    # No event tells the operator: its backoff retry creates the Service.
    wait_ready(namespace, timeout=120)
    assert get_object("service", "qwen-vl", namespace) is not None


def test_every_refused_visionmodel_has_a_status_row(
    namespace: str, operator: OperatorProcess
) -> None:
    apply_manifest(service_quota(namespace, "two-services", 2))
    names = [f"model-{index}" for index in range(5)]
    for name in names:
        apply_manifest(visionmodel(namespace, name=name))

    def all_reported() -> list[dict[str, Any]] | None:
        bodies = list_objects("visionmodel", namespace)
        stated = [body for body in bodies if condition(body, "Ready").get("reason")]
        return bodies if len(stated) == len(names) else None

    bodies = wait_for(all_reported, 120, "a Ready condition on every VisionModel")
    refused = [body for body in bodies if condition(body, "Stalled").get("reason")]
    assert len(refused) == 3
    assert {condition(body, "Stalled")["reason"] for body in refused} == {"ServiceForbidden"}
    table = kubectl("get", "vlm", "-n", namespace).stdout.splitlines()[1:]
    assert all("True" in row or "False" in row for row in table), table
