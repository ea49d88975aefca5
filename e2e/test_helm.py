"""The chart installed by the pinned helm into the local cluster: what it creates, what its
ServiceAccount may and may not do, upgrades that roll the configuration, an uninstall that leaves
every VisionModel serving, and every rendered manifest accepted by the API server."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from chart_harness import (
    CHART_DIR,
    CRD_NAME,
    E2E_VALUES,
    RELEASE,
    RELEASE_NAMESPACE,
    SERVICE_ACCOUNT,
    helm,
    install_release,
    prometheus_operator_crds,
    render,
    values_file,
)
from harness import (
    CRD_DIR,
    OperatorProcess,
    apply_manifest,
    get_object,
    kubectl,
    kubectl_json,
    kubectl_result,
    list_objects,
    visionmodel,
    wait_for,
    wait_ready,
)

CRD_FILE = CRD_DIR / "vlm-operator.io_visionmodels.yaml"
OPERATOR_SELECTOR = f"app.kubernetes.io/name=vlm-operator,app.kubernetes.io/instance={RELEASE}"
# What the operator never needs: each must be refused by the API server's authorizer.
REFUSED = [
    ("get", "secrets"),
    ("list", "secrets"),
    ("watch", "secrets"),
    ("create", "pods"),
    ("delete", "pods"),
    ("patch", "nodes"),
    ("delete", "deployments.apps"),
    ("delete", "visionmodels.vlm-operator.io"),
    ("update", "visionmodels.vlm-operator.io"),
    ("list", "configmaps"),
    ("create", "rolebindings.rbac.authorization.k8s.io"),
    ("create", "serviceaccounts/token"),
    ("get", "nodes/proxy"),
    ("create", "customresourcedefinitions.apiextensions.k8s.io"),
]
# What the reconciler, the autoscaler and kopf do: each must be allowed.
ALLOWED = [
    ("patch", "visionmodels.vlm-operator.io"),
    ("patch", "visionmodels.vlm-operator.io/status"),
    ("patch", "visionmodels.vlm-operator.io/scale"),
    ("create", "deployments.apps"),
    ("patch", "services"),
    ("get", "services"),
    ("get", "poddisruptionbudgets.policy"),
    ("list", "pods"),
    ("get", "configmaps"),
    ("create", "events"),
    ("list", "nodes"),
]


def as_operator(kubeconfig: Path, *args: str) -> Any:
    """kubectl with the operator's identity; returns the completed process, failed or not."""
    return kubectl_result("--kubeconfig", str(kubeconfig), *args)


def operator_pods() -> list[dict[str, Any]]:
    return list_objects("pods", RELEASE_NAMESPACE, label_selector=OPERATOR_SELECTOR)


def test_install_creates_the_crd_rbac_and_a_restricted_operator_pod(cluster: Path) -> None:
    crd = get_object("crd", CRD_NAME)
    assert crd is not None
    assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert crd["metadata"]["annotations"]["meta.helm.sh/release-name"] == RELEASE
    assert get_object("clusterrole", RELEASE) is not None
    assert get_object("clusterrolebinding", RELEASE) is not None
    assert get_object("serviceaccount", SERVICE_ACCOUNT, RELEASE_NAMESPACE) is not None
    deployment = get_object("deployment", RELEASE, RELEASE_NAMESPACE)
    assert deployment is not None
    assert deployment["status"].get("availableReplicas") == 1
    # The pod exists, so PodSecurity admission found it restricted. The namespace enforces it:
    # a pod that is not restricted is refused there.
    [pod] = operator_pods()
    assert pod["status"]["phase"] == "Running"
    unrestricted = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "unrestricted", "namespace": RELEASE_NAMESPACE},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
    }
    refused = kubectl_result(
        "create", "--dry-run=server", "-f", "-", input_text=json.dumps(unrestricted)
    )
    assert refused.returncode != 0
    assert 'violates PodSecurity "restricted:latest"' in refused.stderr


def test_the_operator_identity_is_refused_secrets(
    operator_kubeconfig: Path, namespace: str
) -> None:
    """A Secret a VisionModel refers to (tokenSecretRef) exists; the operator cannot read it."""
    kubectl(
        "create",
        "secret",
        "generic",
        "hf-token",
        "-n",
        namespace,
        "--from-literal=token=hf_planted",
    )
    whoami = as_operator(operator_kubeconfig, "auth", "whoami", "-o", "json")
    username = json.loads(whoami.stdout)["status"]["userInfo"]["username"]
    assert username == f"system:serviceaccount:{RELEASE_NAMESPACE}:{SERVICE_ACCOUNT}"
    read = as_operator(
        operator_kubeconfig, "get", "--raw", f"/api/v1/namespaces/{namespace}/secrets/hf-token"
    )
    assert read.returncode != 0
    assert "(Forbidden)" in read.stderr
    assert "hf_planted" not in read.stdout + read.stderr
    listed = as_operator(operator_kubeconfig, "get", "secrets", "--all-namespaces")
    assert listed.returncode != 0
    assert 'cannot list resource "secrets"' in listed.stderr


@pytest.mark.parametrize(("verb", "resource"), REFUSED)
def test_the_api_server_refuses_the_operator(
    operator_kubeconfig: Path, namespace: str, verb: str, resource: str
) -> None:
    answer = as_operator(operator_kubeconfig, "auth", "can-i", verb, resource, "-n", namespace)
    assert answer.stdout.strip() == "no", answer.stderr


@pytest.mark.parametrize(("verb", "resource"), ALLOWED)
def test_the_api_server_allows_what_the_operator_does(
    operator_kubeconfig: Path, namespace: str, verb: str, resource: str
) -> None:
    answer = as_operator(operator_kubeconfig, "auth", "can-i", verb, resource, "-n", namespace)
    assert answer.stdout.strip() == "yes", answer.stderr


@pytest.fixture(scope="module")
def monitoring_crds(cluster: Path) -> Iterator[None]:
    """The Prometheus operator's ServiceMonitor and PrometheusRule kinds, real schemas included."""
    files = prometheus_operator_crds("servicemonitors", "prometheusrules")
    args = [arg for path in files for arg in ("-f", str(path))]
    names = kubectl("apply", "--server-side", *args, "-o", "name").stdout.split()
    kubectl("wait", "--for=condition=Established", *names, "--timeout=60s")
    yield
    kubectl("delete", *names, "--wait=false")


@pytest.mark.parametrize("mode", ["cluster", "namespaced"])
def test_every_rendered_manifest_is_accepted_by_the_api_server(
    cluster: Path, monitoring_crds: None, namespace: str, mode: str
) -> None:
    values: dict[str, Any] = {
        "replicaCount": 2,
        "serviceMonitor": {"enabled": True},
        "prometheusRule": {"enabled": True},
        "grafanaDashboard": {"enabled": True},
    }
    if mode == "namespaced":
        values["watchNamespaces"] = [namespace, RELEASE_NAMESPACE]
    objects = render(values, release="dry-run", include_crds=True)
    kinds = {item["kind"] for item in objects}
    assert {"ServiceMonitor", "PrometheusRule", "Deployment", "CustomResourceDefinition"} <= kinds
    assert ("Role" in kinds) == (mode == "namespaced")
    for item in objects:
        kubectl("apply", "--dry-run=server", "-f", "-", input_text=json.dumps(item))


def test_upgrade_with_a_changed_value_rolls_the_operator_configuration(cluster: Path) -> None:
    def template_checksum() -> str:
        deployment = get_object("deployment", RELEASE, RELEASE_NAMESPACE) or {}
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        return str(annotations["checksum/config"])

    before = template_checksum()
    [old_pod] = operator_pods()
    try:
        install_release({"config": {"resyncSeconds": 7}})
        config_map = get_object("configmap", f"{RELEASE}-config", RELEASE_NAMESPACE) or {}
        assert yaml.safe_load(config_map["data"]["config.yaml"])["resyncSeconds"] == 7
        assert template_checksum() != before

        def rolled() -> list[dict[str, Any]] | None:
            pods = operator_pods()
            names = {pod["metadata"]["name"] for pod in pods}
            return pods if len(pods) == 1 and old_pod["metadata"]["name"] not in names else None

        [new_pod] = wait_for(rolled, 60, "the operator pod to be replaced")
        assert new_pod["metadata"]["annotations"]["checksum/config"] == template_checksum()
    finally:
        install_release()
    assert template_checksum() == before


def test_uninstall_keeps_the_crd_the_visionmodels_and_their_deployments(
    cluster: Path, namespace: str, operator: OperatorProcess
) -> None:
    apply_manifest(visionmodel(namespace))
    wait_ready(namespace)
    operator.stop()
    ready_before = (get_object("deployment", "qwen-vl", namespace) or {})["status"]["readyReplicas"]
    try:
        helm("uninstall", RELEASE, "-n", RELEASE_NAMESPACE, "--wait")
        assert get_object("clusterrole", RELEASE) is None
        assert get_object("serviceaccount", SERVICE_ACCOUNT, RELEASE_NAMESPACE) is None
        # Garbage collection would act within seconds if the owner were gone; give it time.
        time.sleep(5)
        assert get_object("crd", CRD_NAME) is not None
        assert get_object("visionmodel", "qwen-vl", namespace) is not None
        deployment = get_object("deployment", "qwen-vl", namespace)
        assert deployment is not None
        assert deployment["status"]["readyReplicas"] == ready_before
        pods = list_objects("pods", namespace, label_selector="vlm-operator.io/visionmodel=qwen-vl")
        assert [pod["status"]["phase"] for pod in pods] == ["Running"] * ready_before
    finally:
        # The kept CRD still names this release, so installing it again adopts it.
        install_release()
    manifest = helm("get", "manifest", RELEASE, "-n", RELEASE_NAMESPACE).stdout
    assert f"name: {CRD_NAME}" in manifest


def test_a_crd_installed_with_kubectl_is_adopted_as_docs_install_says(
    cluster: Path, tmp_path: Path
) -> None:
    """docs/install.md: label and annotate the CRD, then install with --force-conflicts."""
    helm("uninstall", RELEASE, "-n", RELEASE_NAMESPACE, "--wait")
    try:
        kubectl("delete", "crd", CRD_NAME)
        kubectl("apply", "--server-side", "-f", str(CRD_FILE))
        kubectl("label", "crd", CRD_NAME, "app.kubernetes.io/managed-by=Helm", "--overwrite")
        kubectl(
            "annotate",
            "crd",
            CRD_NAME,
            "--overwrite",
            f"meta.helm.sh/release-name={RELEASE}",
            f"meta.helm.sh/release-namespace={RELEASE_NAMESPACE}",
        )
        values = values_file(E2E_VALUES, tmp_path)
        chart = str(CHART_DIR)
        helm(
            "install",
            RELEASE,
            chart,
            "-n",
            RELEASE_NAMESPACE,
            "-f",
            str(values),
            "--force-conflicts",
        )
        manifest = helm("get", "manifest", RELEASE, "-n", RELEASE_NAMESPACE).stdout
        assert f"name: {CRD_NAME}" in manifest
        crd = kubectl_json("get", "crd", CRD_NAME, "--show-managed-fields")
        managers = {field["manager"] for field in crd["metadata"]["managedFields"]}
        assert "helm" in managers
    finally:
        install_release()
