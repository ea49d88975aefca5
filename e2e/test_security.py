"""What a tenant cannot make the operator do: change or adopt an object it did not create, or
leak a Secret. Every operator here runs with the chart's identity, which has no Secret access."""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

import pytest

from harness import (
    OperatorProcess,
    apply_manifest,
    condition,
    get_object,
    kubectl,
    kubectl_json,
    kubectl_result,
    list_objects,
    visionmodel,
    wait_condition,
    wait_for,
    wait_ready,
)

pytestmark = pytest.mark.e2e


def foreign_objects(namespace: str, name: str) -> list[dict[str, Any]]:
    """Objects a team made by hand, named like the VisionModel that comes later."""
    labels = {"app": "theirs"}
    return [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"selector": labels, "ports": [{"port": 80}]},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "replicas": 0,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [{"name": "app", "image": "theirs:1"}]},
                },
            },
        },
        {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"maxUnavailable": 1, "selector": {"matchLabels": labels}},
        },
        {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "x"},
                "minReplicas": 1,
                "maxReplicas": 2,
                "metrics": [
                    {
                        "type": "Resource",
                        "resource": {
                            "name": "cpu",
                            "target": {"type": "Utilization", "averageUtilization": 50},
                        },
                    }
                ],
            },
        },
    ]


def hpa_visionmodel(namespace: str, name: str) -> dict[str, Any]:
    """A VisionModel whose scaling driver is an HPA, so that it would write all four kinds."""
    scaling = {
        "driver": "hpa",
        "metricsSource": {"prometheus": {"url": "http://127.0.0.1:9/"}},
    }
    return visionmodel(namespace, name, scaling=scaling)


KINDS = ["Service", "Deployment", "PodDisruptionBudget", "HorizontalPodAutoscaler"]


@pytest.mark.parametrize("kind", KINDS)
def test_an_unowned_object_is_neither_changed_nor_adopted(
    kind: str, namespace: str, operator: OperatorProcess
) -> None:
    victim = next(obj for obj in foreign_objects(namespace, "qwen-vl") if obj["kind"] == kind)
    apply_manifest(victim)
    before = kubectl_json("get", kind.lower(), "qwen-vl", "-n", namespace)
    apply_manifest(hpa_visionmodel(namespace, "qwen-vl"))
    body = wait_condition(namespace, "Stalled", "NameConflict")
    message = condition(body, "Stalled")["message"]
    assert f"{kind} {namespace}/qwen-vl" in message, message
    wait_for(lambda: operator.reconcile_count() >= 3, 30, "a few more reconciles")
    after = kubectl_json("get", kind.lower(), "qwen-vl", "-n", namespace)
    assert after["spec"] == before["spec"]
    assert after["metadata"].get("labels") == before["metadata"].get("labels")
    assert "ownerReferences" not in after["metadata"]
    managers = {entry["manager"] for entry in after["metadata"].get("managedFields", [])}
    assert "vlm-operator" not in managers
    if kind != "Deployment":
        assert get_object("deployment", "qwen-vl", namespace) is None
    kubectl("delete", "visionmodel", "qwen-vl", "-n", namespace, "--wait=true")
    survivor = kubectl_json("get", kind.lower(), "qwen-vl", "-n", namespace)
    assert survivor["metadata"]["uid"] == before["metadata"]["uid"]


def test_a_planted_token_appears_nowhere(
    namespace: str, operator_kubeconfig: Path, operator: OperatorProcess
) -> None:
    """The operator runs with the chart's ServiceAccount, which cannot read the Secret."""
    token = f"hf_{secrets.token_hex(16)}"
    kubectl("create", "secret", "generic", "hf", f"--from-literal=token={token}", "-n", namespace)
    denied = kubectl_result(
        "--kubeconfig", str(operator_kubeconfig), "get", "secret", "hf", "-n", namespace
    )
    assert denied.returncode != 0
    assert "Forbidden" in denied.stderr, denied.stderr
    manifest = visionmodel(
        namespace,
        model={"id": "Qwen/Qwen2.5-VL-7B-Instruct", "tokenSecretRef": {"name": "hf"}},
        engine={
            "extraArgs": ["--tool-call-parser", "$(HF_TOKEN)"],
            "env": [{"name": "ECHO", "value": "$(HF_TOKEN)"}],
        },
    )
    apply_manifest(manifest)
    body = wait_ready(namespace)
    pods = list_objects("pod", namespace, "vlm-operator.io/visionmodel=qwen-vl")
    assert pods
    container = pods[0]["spec"]["containers"][0]
    # The kubelet turns $$ into $, so the references reach vLLM as text, never as the token.
    assert container["args"][-2:] == ["--tool-call-parser", "$$(HF_TOKEN)"]
    assert {"name": "ECHO", "value": "$$(HF_TOKEN)"} in container["env"]
    events = kubectl("get", "events", "-n", namespace, "-o", "json").stdout
    seen = {
        "operator log": operator.logs(),
        "events": events,
        "status": json.dumps(body["status"]),
        "pods": json.dumps(pods),
        "deployment": json.dumps(get_object("deployment", "qwen-vl", namespace)),
    }
    assert "PlanChosen" in events
    assert [where for where, text in seen.items() if token in text] == []
