"""Helpers for the chart's tests: the pinned helm and promtool, `helm template` as parsed objects,
and a kubeconfig that carries the chart's ServiceAccount identity.

helm is built by `make tools` into ~/.cache/vlm-operator/helm-<HELM_VERSION>/ (the version is
pinned in e2e/cluster/versions.env); HELM overrides the binary. promtool comes with Debian's
prometheus package, unpacked by e2e/prometheus/install.sh.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from harness import KUBECTL, REPO_ROOT, get_object, kubectl
from prometheus_harness import prometheus_binary

CHART_DIR = REPO_ROOT / "charts" / "vlm-operator"
VERSIONS_FILE = REPO_ROOT / "e2e" / "cluster" / "versions.env"
CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "vlm-operator"


class ToolMissingError(AssertionError):
    """A tool the tests need is not built; the message says how to build it."""


def pinned_version(name: str) -> str:
    """A version pinned in versions.env, such as HELM_VERSION."""
    for line in VERSIONS_FILE.read_text(encoding="utf-8").splitlines():
        key, _, value = line.partition("=")
        if key.strip() == name:
            return value.strip()
    raise ToolMissingError(f"{name} is not pinned in {VERSIONS_FILE}")


def helm_binary() -> Path:
    """The pinned helm, or $HELM. Fails with the command that builds it when it is missing."""
    if "HELM" in os.environ:
        return Path(os.environ["HELM"])
    version = pinned_version("HELM_VERSION")
    binary = CACHE_DIR / f"helm-{version}" / "helm"
    if not os.access(binary, os.X_OK):
        raise ToolMissingError(f"helm {version} is not built at {binary}: run `make tools`")
    return binary


def promtool_binary() -> Path:
    """promtool from Debian's prometheus package, beside the prometheus binary."""
    promtool = prometheus_binary().parent / "promtool"
    if not os.access(promtool, os.X_OK):
        raise ToolMissingError(f"{promtool} is missing from the unpacked prometheus package")
    return promtool


def run_tool(
    command: Sequence[str | Path], *, input_text: str | None = None, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    """Run a tool; fail the test with its output when it fails."""
    result = subprocess.run(
        [str(part) for part in command],
        input=input_text,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, "PATH": f"{Path(KUBECTL).parent}{os.pathsep}{os.environ['PATH']}"},
    )
    if result.returncode != 0:
        raise AssertionError(
            f"{' '.join(str(part) for part in command)} failed ({result.returncode}):\n"
            f"{result.stdout}\n{result.stderr}"
        )
    return result


def helm(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """Run the pinned helm."""
    return run_tool([helm_binary(), *args], timeout=timeout)


def values_file(values: Mapping[str, Any], directory: Path) -> Path:
    """Write values to a file for `helm -f`."""
    path = directory / "values.yaml"
    path.write_text(yaml.safe_dump(dict(values)), encoding="utf-8")
    return path


def render(
    values: Mapping[str, Any] | None = None,
    *,
    release: str = "vlm-operator",
    namespace: str = "vlm-system",
    include_crds: bool = False,
) -> list[dict[str, Any]]:
    """`helm template` of the chart with the given values, as a list of objects."""
    with tempfile.TemporaryDirectory() as scratch:
        args = ["template", release, str(CHART_DIR), "--namespace", namespace]
        args += ["-f", str(values_file(values or {}, Path(scratch)))]
        if include_crds:
            args.append("--include-crds")
        output = helm(*args).stdout
    return [document for document in yaml.safe_load_all(output) if document]


def find(
    objects: Sequence[Mapping[str, Any]], kind: str, name: str | None = None
) -> dict[str, Any]:
    """The one rendered object of a kind (and name)."""
    matches = [
        dict(item)
        for item in objects
        if item["kind"] == kind and (name is None or item["metadata"]["name"] == name)
    ]
    assert len(matches) == 1, f"expected one {kind} {name or ''}, rendered {len(matches)}"
    return matches[0]


def service_account_kubeconfig(namespace: str, name: str, path: Path) -> Path:
    """A kubeconfig for the current cluster whose only credential is a TokenRequest token of
    ServiceAccount namespace/name, valid for an hour."""
    token = kubectl("create", "token", name, "-n", namespace, "--duration=1h").stdout.strip()
    current = json.loads(kubectl("config", "view", "--raw", "--minify", "-o", "json").stdout)
    cluster = current["clusters"][0]["cluster"]
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "local", "cluster": cluster}],
        "users": [{"name": f"{namespace}:{name}", "user": {"token": token}}],
        "contexts": [
            {"name": "operator", "context": {"cluster": "local", "user": f"{namespace}:{name}"}}
        ],
        "current-context": "operator",
    }
    path.write_text(json.dumps(config), encoding="utf-8")
    path.chmod(0o600)
    return path


CRD_NAME = "visionmodels.vlm-operator.io"
RELEASE = "vlm-operator"
RELEASE_NAMESPACE = "vlm-system"
SERVICE_ACCOUNT = "vlm-operator"
E2E_VALUES: dict[str, Any] = {
    # Every node of the local cluster is a GPU node with the GPU taint.
    "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
}
"""Values of the tests' release; the operator pod is a kwok pod and never runs."""
RESTRICTED_NAMESPACE = {
    "apiVersion": "v1",
    "kind": "Namespace",
    "metadata": {
        "name": RELEASE_NAMESPACE,
        "labels": {
            # The API server's PodSecurity admission refuses operator pods that are not restricted.
            "pod-security.kubernetes.io/enforce": "restricted",
            "pod-security.kubernetes.io/enforce-version": "latest",
        },
    },
}


def adopt_unowned_crd() -> None:
    """Let the release adopt a VisionModel CRD that `kubectl apply` installed (by an earlier
    checkout's tests or demo on a kept cluster), as docs/install.md tells users to."""
    crd = get_object("crd", CRD_NAME)
    annotations = (crd or {}).get("metadata", {}).get("annotations", {})
    if crd is None or "meta.helm.sh/release-name" in annotations:
        return
    kubectl("label", "crd", CRD_NAME, "app.kubernetes.io/managed-by=Helm", "--overwrite")
    kubectl(
        "annotate",
        "crd",
        CRD_NAME,
        "--overwrite",
        f"meta.helm.sh/release-name={RELEASE}",
        f"meta.helm.sh/release-namespace={RELEASE_NAMESPACE}",
    )


def install_release(values: Mapping[str, Any] | None = None) -> None:
    """`helm upgrade --install` of the chart as the tests' release in a namespace whose PodSecurity
    level is restricted, waiting until the operator Deployment is available."""
    kubectl("apply", "-f", "-", input_text=json.dumps(RESTRICTED_NAMESPACE))
    adopt_unowned_crd()
    with tempfile.TemporaryDirectory() as scratch:
        args = ["upgrade", "--install", RELEASE, str(CHART_DIR), "-n", RELEASE_NAMESPACE]
        args += ["-f", str(values_file({**E2E_VALUES, **(values or {})}, Path(scratch)))]
        # The release owns every field of its objects, also those an adopted CRD's kubectl
        # apply once set.
        helm(*args, "--force-conflicts", "--wait", "--timeout", "120s")


def prometheus_operator_crds(*plurals: str) -> list[Path]:
    """CRD files of the pinned Prometheus operator, from its module on the Go module proxy."""
    version = pinned_version("PROMETHEUS_OPERATOR_VERSION")
    module = f"github.com/prometheus-operator/prometheus-operator@{version}"
    with tempfile.TemporaryDirectory() as outside_any_module:
        result = subprocess.run(
            ["go", "mod", "download", "-json", module],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
            cwd=outside_any_module,
        )
    if result.returncode != 0:
        raise ToolMissingError(f"go mod download {module} failed:\n{result.stdout}{result.stderr}")
    crd_dir = Path(json.loads(result.stdout)["Dir"]) / "example" / "prometheus-operator-crd"
    return [crd_dir / f"monitoring.coreos.com_{plural}.yaml" for plural in plurals]
