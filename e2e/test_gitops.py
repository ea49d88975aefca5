"""GitOps end to end: the real Argo CD syncs VisionModels from a real git daemon, judges them with
our health check, and kstatus (what Flux and Helm 4 use) reads the same objects.

Run alone with `make e2e-gitops`. The tools come from `make tools`; without them every test here
fails and says so.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
import yaml

from chart_harness import service_account_kubeconfig
from gitops_harness import (
    CLUSTER_NAME,
    ArgoCD,
    app_state,
    application,
    argocd_health,
    get_application,
    kstatus,
    refresh,
    resource_health,
    tool_bin,
    wait_application,
)
from harness import (
    KUBECTL,
    REPO_ROOT,
    OperatorProcess,
    apply_manifest,
    condition,
    free_port,
    get_object,
    kubectl,
    kubectl_result,
    list_objects,
    operator_environment,
    visionmodel,
    wait_condition,
    wait_for,
    wait_ready,
)
from prometheus_harness import PodMirror, Prometheus

pytestmark = [pytest.mark.e2e, pytest.mark.gitops]

ARTIFACTS = Path(os.environ.get("VLM_CLUSTER_DIR", REPO_ROOT / ".cluster")).resolve() / "artifacts"
EXAMPLES = REPO_ROOT / "examples" / "gitops"
CHECK_DIR = (
    REPO_ROOT / "gitops" / "argocd" / "resource_customizations" / "vlm-operator.io" / "VisionModel"
)
CHILD_KINDS = ("deployment", "service", "poddisruptionbudget")


def record(line: str) -> None:
    """Keep a measured figure beside the test artifacts, and show it with -s."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with (ARTIFACTS / "gitops-measurements.txt").open("a", encoding="utf-8") as out:
        out.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {line}\n")
    print(line)


@pytest.fixture(scope="module")
def argocd(cluster: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ArgoCD]:
    with ArgoCD(cluster, tmp_path_factory.mktemp("argocd"), ARTIFACTS) as running:
        yield running


@pytest.fixture
def app_name(namespace: str) -> Iterator[str]:
    """The name of the test's Application, deleted (without its resources) after the test, so
    nothing syncs into the namespace while it is deleted."""
    yield namespace
    kubectl_result("delete", "application", namespace, "-n", "argocd", "--ignore-not-found")


def example_model(name: str, prometheus_url: str, **changes: Any) -> dict[str, Any]:
    """A VisionModel of examples/gitops/models/, with its metrics source on loopback."""
    manifest: dict[str, Any] = yaml.safe_load(
        (EXAMPLES / "models" / f"{name}.yaml").read_text(encoding="utf-8")
    )
    scaling = manifest["spec"].get("scaling")
    if scaling is not None:
        scaling["metricsSource"] = {"prometheus": {"url": prometheus_url}}
    for path, value in changes.items():
        target = manifest["spec"]
        *parents, leaf = path.split(".")
        for key in parents:
            target = target.setdefault(key, {})
        target[leaf] = value
    return manifest


def children(namespace: str, name: str) -> list[str]:
    found = []
    for kind in CHILD_KINDS:
        for obj in list_objects(kind, namespace, f"vlm-operator.io/visionmodel={name}"):
            found.append(f"{kind}/{obj['metadata']['name']}")
    return found


def test_health_test_yaml_in_argo_cds_own_lua_vm(tmp_path: Path) -> None:
    """Every case of health_test.yaml, judged by the built Argo CD with our argocd-cm."""
    bin_dir = tool_bin()
    cases = yaml.safe_load((CHECK_DIR / "health_test.yaml").read_text(encoding="utf-8"))["tests"]
    for case in cases:
        obj = yaml.safe_load((CHECK_DIR / case["inputPath"]).read_text(encoding="utf-8"))
        judged = argocd_health(bin_dir, obj, tmp_path / Path(case["inputPath"]).stem)
        assert judged == case["healthStatus"], case["inputPath"]


CHART_RELEASE = "gitops"
"""Application A's release name: its objects are gitops-vlm-operator*, apart from the session's
own release of the chart."""


def chart_files() -> dict[str, str]:
    """charts/vlm-operator of this checkout, as files for the git repository."""
    chart = REPO_ROOT / "charts" / "vlm-operator"
    return {
        f"charts/vlm-operator/{path.relative_to(chart)}": path.read_text(encoding="utf-8")
        for path in sorted(chart.rglob("*"))
        if path.is_file()
    }


def application_a(name: str, repo_url: str, namespace: str) -> dict[str, Any]:
    """examples/gitops/argocd/vlm-operator.yaml pointed at the test's git repository, cluster
    and namespace, with the values the local cluster needs on top of the example's."""
    app: dict[str, Any] = yaml.safe_load(
        (EXAMPLES / "argocd" / "vlm-operator.yaml").read_text(encoding="utf-8")
    )
    app["metadata"]["name"] = name
    chart, values = app["spec"]["sources"]
    for source in (chart, values):
        source["repoURL"] = repo_url
        source["targetRevision"] = "HEAD"
    chart["helm"]["releaseName"] = CHART_RELEASE
    chart["helm"]["valuesObject"] = {
        # The session's own release of the chart installed the CRD and keeps it.
        "crd": {"install": False},
        "watchNamespaces": [namespace],
        # Every node of the local cluster is a GPU node with the GPU taint.
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
    }
    app["spec"]["destination"] = {"name": CLUSTER_NAME, "namespace": namespace}
    return app


@pytest.fixture
def chart_release_cleanup() -> Iterator[None]:
    """Application A's cluster-scoped RBAC outlives its namespace: delete it after the test.
    (The CRD stays: the session's release owns it as well.)"""
    yield
    selector = f"app.kubernetes.io/instance={CHART_RELEASE}"
    kubectl_result("delete", "clusterrole,clusterrolebinding", "-l", selector, "--ignore-not-found")


def test_application_a_installs_the_chart_and_the_operator_runs_with_its_identity(
    argocd: ArgoCD,
    namespace: str,
    app_name: str,
    chart_release_cleanup: None,
    tmp_path: Path,
) -> None:
    """The chart from git with the example's values file (a second source): Synced and Healthy;
    the operator then runs with a token of the ServiceAccount Argo CD created, serves a
    VisionModel, and is refused Secrets."""
    values = (EXAMPLES / "platform" / "vlm-operator" / "values.yaml").read_text(encoding="utf-8")
    revision = argocd.git.write(
        {**chart_files(), "platform/vlm-operator/values.yaml": values}, "the chart"
    )
    created = time.monotonic()
    apply_manifest(application_a(app_name, argocd.git.url, namespace))
    app = wait_application(app_name, "Synced", "Healthy", 180, revision=revision)
    record(f"Application A: Synced/Healthy {time.monotonic() - created:.1f} s after creation")
    kinds = {resource["kind"] for resource in app["status"]["resources"]}
    assert {"ServiceAccount", "Role", "ClusterRole", "Deployment"} <= kinds
    account = f"{CHART_RELEASE}-vlm-operator"
    config = get_object("configmap", f"{account}-config", namespace) or {}
    assert "scrapePods: false" in str(config.get("data")), "the example's values file was used"

    identity = service_account_kubeconfig(namespace, account, tmp_path / "a.kubeconfig")
    refused = kubectl_result("--kubeconfig", str(identity), "get", "secrets", "-n", namespace)
    assert refused.returncode != 0
    assert "Forbidden" in refused.stderr
    operator = OperatorProcess(
        namespace,
        ARTIFACTS / f"operator-{namespace}.log",
        operator_environment(),
        kubeconfig=identity,
    )
    operator.start()
    try:
        apply_manifest(visionmodel(namespace))
        wait_ready(namespace)
    finally:
        operator.stop()


def test_application_b_progressing_healthy_degraded_and_pruned(
    argocd: ArgoCD, namespace: str, app_name: str, operator_kubeconfig: Path
) -> None:
    """Two VisionModels from git: Progressing until the operator reports, then Healthy; an
    infeasible commit turns B Degraded and leaves the running Deployment alone; a model removed
    from git is pruned and its children go by garbage collection."""
    nowhere = f"http://127.0.0.1:{free_port()}"  # the autoscaler finds no Prometheus and holds
    folder = f"apps/{app_name}"
    models = {
        "qwen-vl": example_model("qwen-vl", nowhere),
        "internvl-docs": example_model("internvl-docs", nowhere),
    }
    first = argocd.git.write(
        {f"{folder}/{name}.yaml": yaml.safe_dump(body) for name, body in models.items()},
        "two VisionModels",
    )
    created = time.monotonic()
    apply_manifest(application(app_name, argocd.git.url, folder, namespace))

    # No operator yet: the objects exist but nothing has reported on them.
    app = wait_application(app_name, "Synced", "Progressing", 120, revision=first)
    synced_after = time.monotonic() - created
    for name in models:
        assert resource_health(app, "VisionModel", name) == {
            "status": "Progressing",
            "message": "Waiting for the operator to report status",
        }
        # The CRD's status default (observedGeneration 0) keeps kstatus from reading Current.
        unreported = get_object("visionmodel", name, namespace) or {}
        assert unreported["status"]["observedGeneration"] == 0
        for library in ("sigs.k8s.io/cli-utils", "github.com/fluxcd/cli-utils"):
            assert kstatus(argocd.bin, unreported)[library] == {
                "status": "InProgress",
                "message": "VisionModel generation is 1, but latest observed generation is 0",
            }

    operator = OperatorProcess(
        namespace,
        ARTIFACTS / f"operator-{namespace}.log",
        operator_environment(),
        kubeconfig=operator_kubeconfig,
    )
    operator.start()
    try:
        started = time.monotonic()
        app = wait_application(app_name, "Synced", "Healthy", 180)
        record(
            f"Application B: Synced/Progressing {synced_after:.1f} s after creation; "
            f"Healthy {time.monotonic() - started:.1f} s after the operator started "
            f"({time.monotonic() - created:.1f} s after creation)"
        )
        for name in models:
            body = wait_ready(namespace, name)
            health = resource_health(app, "VisionModel", name)
            assert health == {"status": "Healthy", "message": condition(body, "Ready")["message"]}
        before = get_object("deployment", "internvl-docs", namespace) or {}

        # An infeasible commit: InternVL3-8B does not fit one T4.
        models["internvl-docs"]["spec"]["hardware"] = {
            "gpuProduct": "Tesla-T4",
            "maxGpusPerReplica": 1,
        }
        second = argocd.git.write(
            {f"{folder}/internvl-docs.yaml": yaml.safe_dump(models["internvl-docs"])},
            "internvl-docs on one T4",
        )
        refresh(app_name)
        app = wait_application(app_name, "Synced", "Degraded", 120, revision=second)
        body = wait_condition(namespace, "Stalled", "InsufficientGPUMemory", "internvl-docs")
        stalled = condition(body, "Stalled")
        assert resource_health(get_application(app_name), "VisionModel", "internvl-docs") == {
            "status": "Degraded",
            "message": f"InsufficientGPUMemory: {stalled['message']}",
        }
        assert "The running Deployment is unchanged" in stalled["message"]
        after = get_object("deployment", "internvl-docs", namespace) or {}
        assert after["metadata"]["generation"] == before["metadata"]["generation"]
        assert after["spec"] == before["spec"]
        assert after["status"].get("readyReplicas") == 1

        # Pruning, with the operator stopped: the children still go, so it is garbage
        # collection (Argo CD prunes with foreground propagation) and not the operator.
        owned = children(namespace, "internvl-docs")
        assert owned
        operator.stop()
        third = argocd.git.write({}, "drop internvl-docs", remove=(f"{folder}/internvl-docs.yaml",))
        refresh(app_name)
        wait_for(lambda: not children(namespace, "internvl-docs"), 120, f"{owned} collected")
        assert children(namespace, "qwen-vl")
        # kopf's finalizer (the autoscaler timer needs one) holds the VisionModel itself until
        # the operator is back.
        operator.start()
        wait_for(
            lambda: get_object("visionmodel", "internvl-docs", namespace) is None,
            60,
            "internvl-docs deleted",
        )
        wait_application(app_name, "Synced", "Healthy", 60, revision=third)
    finally:
        operator.stop()


def test_kstatus_follows_the_conditions(
    operator: OperatorProcess, namespace: str, tmp_path: Path
) -> None:
    """kstatus (both libraries) and Argo CD's VM with our check, on what the operator writes:
    InProgress while reconciling, Current when Ready, Failed when Stalled, each at the
    generation the status describes."""
    bin_dir = tool_bin()

    def judged(expected_generation: int) -> tuple[dict[str, Any], dict[str, Any], dict[str, str]]:
        body = get_object("visionmodel", "qwen-vl", namespace) or {}
        assert body["metadata"]["generation"] == expected_generation
        assert body["status"]["observedGeneration"] == expected_generation
        verdict = kstatus(bin_dir, body)
        assert verdict["observedGeneration"] == expected_generation
        assert verdict["sigs.k8s.io/cli-utils"] == verdict["github.com/fluxcd/cli-utils"]
        return body, verdict["sigs.k8s.io/cli-utils"], argocd_health(bin_dir, body, tmp_path)

    # 12 replicas on the two 4-GPU L40S nodes: 8 run, 4 wait for GPUs, and the model reconciles.
    apply_manifest(
        visionmodel(
            namespace, replicas=12, hardware={"gpuProduct": "NVIDIA-L40S", "maxGpusPerReplica": 1}
        )
    )
    wait_condition(namespace, "Reconciling", "RollingUpdate", timeout=120)
    body, upstream, argo = judged(1)
    reconciling = condition(body, "Reconciling")
    assert upstream == {"status": "InProgress", "message": reconciling["message"]}
    assert argo == {"status": "Progressing", "message": f"RollingUpdate: {reconciling['message']}"}

    kubectl(
        "patch",
        "visionmodel",
        "qwen-vl",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        '{"spec":{"replicas":1}}',
    )
    body = wait_ready(namespace)
    body, upstream, argo = judged(2)
    assert upstream["status"] == "Current"
    assert argo == {"status": "Healthy", "message": condition(body, "Ready")["message"]}

    infeasible = {
        "spec": {
            "hardware": {"gpuProduct": "Tesla-T4", "maxGpusPerReplica": 1},
            "model": {"id": "Qwen/Qwen2.5-VL-72B-Instruct"},
        }
    }
    kubectl(
        "patch",
        "visionmodel",
        "qwen-vl",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        json.dumps(infeasible),
    )
    wait_for(
        lambda: (
            condition(get_object("visionmodel", "qwen-vl", namespace), "Stalled").get(
                "observedGeneration"
            )
            == 3
        ),
        60,
        "Stalled at generation 3",
    )
    body, upstream, argo = judged(3)
    stalled = condition(body, "Stalled")
    assert upstream == {"status": "Failed", "message": stalled["message"]}
    assert argo == {"status": "Degraded", "message": f"{stalled['reason']}: {stalled['message']}"}


class ReplicasWatch:
    """Every value spec.replicas of one VisionModel takes, from a `kubectl get --watch`."""

    def __init__(self, namespace: str, name: str) -> None:
        self._process = subprocess.Popen(
            [
                KUBECTL,
                "get",
                "visionmodel",
                name,
                "-n",
                namespace,
                "--watch",
                "-o",
                "jsonpath={.spec.replicas}{'\\n'}",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self._values: list[int] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            if line.strip().isdigit():
                with self._lock:
                    if not self._values or self._values[-1] != int(line):
                        self._values.append(int(line))

    def values(self) -> list[int]:
        """The distinct successive values seen so far."""
        with self._lock:
            return list(self._values)

    def stop(self) -> None:
        self._process.terminate()
        self._process.wait(timeout=10)
        self._thread.join(timeout=10)


def sync_samples(app_name: str, seconds: float) -> list[str]:
    """The Application's sync status every half second for a while."""
    samples = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        samples.append(app_state(get_application(app_name))[0])
        time.sleep(0.5)
    return samples


PHASE_SECONDS = 25
"""How long the Application is watched while the autoscaler holds, and after a commit."""

# Where spec.replicas lives in git, and what the Application says about it.
REPLICAS_CONFIGS = {
    "naive": {"in_git": True, "ignore": False, "respect": False},
    "ignore-differences": {"in_git": True, "ignore": True, "respect": False},
    "ignore-and-respect": {"in_git": True, "ignore": True, "respect": True},
    "out-of-git": {"in_git": False, "ignore": False, "respect": False},
}


@pytest.mark.parametrize("config", list(REPLICAS_CONFIGS))
def test_autoscaler_and_self_heal_on_replicas(
    config: str,
    argocd: ArgoCD,
    namespace: str,
    app_name: str,
    operator: OperatorProcess,
    tmp_path: Path,
) -> None:
    """The operator's autoscaler keeps two warm replicas where git says one (or nothing), while
    Argo CD auto-syncs with self-heal; then a commit that changes something else is synced.
    Only the naive Application fights the autoscaler; ignoreDifferences alone still resets the
    replicas on the next sync."""
    settings = REPLICAS_CONFIGS[config]
    folder = f"apps/{app_name}"
    with Prometheus(tmp_path / "prometheus") as prometheus:
        mirror = PodMirror(namespace, prometheus, tmp_path / "pods")
        mirror.start()
        watch: ReplicasWatch | None = None
        try:
            model = example_model(
                "qwen-vl", prometheus.url, **{"scaling.warmReplicas": 2, "scaling.minReplicas": 1}
            )
            if settings["in_git"]:
                model["spec"]["replicas"] = 1
            argocd.git.write({f"{folder}/qwen-vl.yaml": yaml.safe_dump(model)}, config)
            apply_manifest(
                application(
                    app_name,
                    argocd.git.url,
                    folder,
                    namespace,
                    ignore_replicas=settings["ignore"],
                    respect_ignore_differences=settings["respect"],
                )
            )
            wait_for(lambda: get_object("visionmodel", "qwen-vl", namespace), 60, "the sync")
            watch = ReplicasWatch(namespace, "qwen-vl")
            wait_for(lambda: 2 in watch.values(), 120, "the autoscaler's two warm replicas")
            while_scaling = sync_samples(app_name, PHASE_SECONDS)
            scaled = watch.values()
            model["metadata"]["annotations"] = {"example.com/owner": "docs-team"}
            commit = argocd.git.write({f"{folder}/qwen-vl.yaml": yaml.safe_dump(model)}, "owner")
            refresh(app_name)
            after_commit = sync_samples(app_name, PHASE_SECONDS)
            final = get_application(app_name)
            committed = watch.values()
        finally:
            if watch is not None:
                watch.stop()
            mirror.stop()
    reverts = sum(1 for before, after in pairwise(committed) if (before, after) == (2, 1))
    record(
        f"replicas, {config}: spec.replicas went {committed}; while the autoscaler held 2, "
        f"{while_scaling.count('OutOfSync')}/{len(while_scaling)} samples OutOfSync; "
        f"{reverts} resets to git's 1 in {2 * PHASE_SECONDS} s; after a commit, "
        f"{after_commit.count('OutOfSync')}/{len(after_commit)} samples OutOfSync"
    )
    first_two = scaled.index(2)
    if config == "naive":
        # Self-heal puts git's 1 back, the autoscaler its 2 again: a fight, mostly OutOfSync.
        assert 1 in scaled[first_two:], scaled
        assert "OutOfSync" in while_scaling
        return
    assert scaled[first_two:] == [2], scaled
    assert set(while_scaling) == {"Synced"}
    assert app_state(final)[:1] == ("Synced",)
    assert app_state(final)[2] == commit
    if config == "ignore-differences":
        # Ignored in the diff, but applied by the next sync: replicas went back to 1.
        assert 1 in committed[len(scaled) :], committed
    else:
        assert committed[first_two:] == [2], committed
