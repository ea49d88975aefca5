"""What a tenant cannot make the operator do: change or adopt an object it did not create, or
leak a Secret. The operator runs with an identity that has no access to Secrets."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
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
    operator_environment,
    visionmodel,
    wait_condition,
    wait_for,
    wait_ready,
)

pytestmark = pytest.mark.e2e

SERVICE_ACCOUNT = "vlm-operator-test"
CLUSTER_RULES = [
    # kopf lists namespaces even when it watches exactly one.
    {"apiGroups": [""], "resources": ["nodes", "namespaces"], "verbs": ["get", "list", "watch"]},
    {
        "apiGroups": ["apiextensions.k8s.io"],
        "resources": ["customresourcedefinitions"],
        "verbs": ["get", "list", "watch"],
    },
]
NAMESPACE_RULES = [
    {
        "apiGroups": ["vlm-operator.io"],
        "resources": ["visionmodels", "visionmodels/status", "visionmodels/scale"],
        "verbs": ["get", "list", "watch", "patch", "update"],
    },
    {
        "apiGroups": ["", "apps", "policy", "autoscaling", "keda.sh", "monitoring.coreos.com"],
        "resources": [
            "services",
            "deployments",
            "poddisruptionbudgets",
            "horizontalpodautoscalers",
            "scaledobjects",
            "podmonitors",
        ],
        "verbs": ["get", "list", "watch", "create", "patch", "update", "delete"],
    },
    {"apiGroups": [""], "resources": ["pods", "configmaps"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": ["", "events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
]
"""The operator's rights in this test: what it reads and writes, and no Secrets at all."""


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


@pytest.fixture
def restricted_kubeconfig(namespace: str, tmp_path: Path) -> Iterator[Path]:
    """A kubeconfig for a service account bound to CLUSTER_RULES and NAMESPACE_RULES only."""
    cluster_role = f"{namespace}-operator"
    subject = [{"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": namespace}]
    role_ref = {"apiGroup": "rbac.authorization.k8s.io", "name": cluster_role}
    manifests = [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": SERVICE_ACCOUNT}},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": cluster_role},
            "rules": CLUSTER_RULES,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": cluster_role},
            "subjects": subject,
            "roleRef": {**role_ref, "kind": "ClusterRole"},
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "operator"},
            "rules": NAMESPACE_RULES,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "operator"},
            "subjects": subject,
            "roleRef": {**role_ref, "kind": "Role", "name": "operator"},
        },
    ]
    for manifest in manifests:
        kubectl("apply", "-n", namespace, "-f", "-", input_text=json.dumps(manifest))
    token = kubectl("create", "token", SERVICE_ACCOUNT, "-n", namespace).stdout.strip()
    config = kubectl_json("config", "view", "--raw", "--minify")
    config["users"] = [{"name": SERVICE_ACCOUNT, "user": {"token": token}}]
    config["contexts"][0]["context"]["user"] = SERVICE_ACCOUNT
    path = tmp_path / "kubeconfig"
    path.write_text(json.dumps(config), encoding="utf-8")
    try:
        yield path
    finally:
        kubectl_result("delete", "clusterrolebinding,clusterrole", cluster_role)


@pytest.fixture
def restricted_operator(
    namespace: str, restricted_kubeconfig: Path, tmp_path: Path
) -> Iterator[OperatorProcess]:
    """The operator as a subprocess acting with the restricted identity."""
    process = OperatorProcess(
        namespace,
        tmp_path / "operator.log",
        operator_environment(KUBECONFIG=str(restricted_kubeconfig)),
    )
    try:
        process.start()
        yield process
    finally:
        process.stop()


def test_a_planted_token_appears_nowhere(
    namespace: str, restricted_kubeconfig: Path, restricted_operator: OperatorProcess
) -> None:
    token = f"hf_{secrets.token_hex(16)}"
    kubectl("create", "secret", "generic", "hf", f"--from-literal=token={token}", "-n", namespace)
    denied = kubectl_result(
        "--kubeconfig", str(restricted_kubeconfig), "get", "secret", "hf", "-n", namespace
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
        "operator log": restricted_operator.logs(),
        "events": events,
        "status": json.dumps(body["status"]),
        "pods": json.dumps(pods),
        "deployment": json.dumps(get_object("deployment", "qwen-vl", namespace)),
    }
    assert "PlanChosen" in events
    assert [where for where, text in seen.items() if token in text] == []
