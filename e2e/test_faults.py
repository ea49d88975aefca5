"""Faults survived by the operator on the real control plane: namespace deletion, objects too
large for kopf's bookkeeping, kill -9 mid-reconcile, the API server and etcd stopped and
restarted under a running operator, and concurrent writers. Each is counted in
docs/reliability.md."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import (
    KUBECTL,
    REPO_ROOT,
    OperatorProcess,
    apply_manifest,
    get_object,
    kubectl,
    kubectl_result,
    list_objects,
    operator_environment,
    visionmodel,
    wait_for,
    wait_ready,
)

pytestmark = pytest.mark.e2e

STATE = Path(os.environ.get("VLM_CLUSTER_DIR", REPO_ROOT / ".cluster")).resolve()
PIDS = STATE / "kwok" / "clusters" / "vlm" / "pids"
MANAGED = "app.kubernetes.io/managed-by=vlm-operator"


def assert_no_kopf_state(namespace: str, name: str = "qwen-vl") -> None:
    """kopf keeps nothing on the object: no finalizer, no annotation of its own."""
    body = get_object("visionmodel", name, namespace)
    assert body is not None
    assert not body["metadata"].get("finalizers")
    annotations = body["metadata"].get("annotations", {})
    assert not [key for key in annotations if "kopf" in key or "last-handled" in key]


def one_of_each_child(namespace: str, count: int = 1) -> None:
    for kind in ("deployment", "service", "poddisruptionbudget"):
        assert len(list_objects(kind, namespace, MANAGED)) == count, kind


def test_a_namespace_is_deleted_while_its_operator_runs(cluster: Path, tmp_path: Path) -> None:
    name = f"e2e-gone-{uuid.uuid4().hex[:6]}"
    kubectl("create", "namespace", name)
    kubectl("wait", "--for=create", "serviceaccount/default", "-n", name, "--timeout=30s")
    process = OperatorProcess(name, tmp_path / "operator.log", operator_environment())
    process.start()
    try:
        apply_manifest(visionmodel(name))
        wait_ready(name)
        assert_no_kopf_state(name)
        kubectl("delete", "namespace", name, "--wait=false")
        wait_for(lambda: get_object("namespace", name) is None, 90, f"namespace {name} gone")
        assert process.pid is not None
    finally:
        process.stop()
        kubectl_result("delete", "namespace", name, "--wait=false", "--ignore-not-found")


def test_a_visionmodel_near_the_annotation_limit_is_served_and_deleted(
    namespace: str, operator: OperatorProcess
) -> None:
    manifest = visionmodel(namespace)
    # 200 KB of annotations: within the API's 256 KiB, but no room for a copy of the object.
    manifest["metadata"]["annotations"] = {"example.com/notes": "x" * 200_000}
    # Server-side: client-side apply would itself copy the object into an annotation.
    kubectl("apply", "--server-side", "-f", "-", input_text=json.dumps(manifest))
    wait_ready(namespace)
    assert_no_kopf_state(namespace)
    kubectl("delete", "visionmodel", "qwen-vl", "-n", namespace, "--timeout=30s")
    assert get_object("visionmodel", "qwen-vl", namespace) is None


def test_kill_9_mid_reconcile_converges_without_duplicates(
    namespace: str, operator: OperatorProcess
) -> None:
    names = [f"model-{index}" for index in range(6)]
    for name in names:
        apply_manifest(visionmodel(namespace, name=name, hardware={"maxGpusPerReplica": 1}))
    time.sleep(1.0)  # the operator is applying children now
    operator.kill()
    operator.start()
    for name in names:
        wait_ready(namespace, name)
    one_of_each_child(namespace, len(names))
    for name in names:
        replica_sets = list_objects("replicaset", namespace, f"vlm-operator.io/visionmodel={name}")
        assert len(replica_sets) == 1, name


def test_concurrent_writers_converge_on_the_spec(namespace: str, operator: OperatorProcess) -> None:
    apply_manifest(visionmodel(namespace))
    wait_ready(namespace)
    stop = threading.Event()

    def rival() -> None:
        """Another writer keeps changing what the operator owns, and the spec itself."""
        replicas = 1
        while not stop.is_set():
            replicas = 3 - replicas
            kubectl_result("scale", "deployment", "qwen-vl", "-n", namespace, "--replicas=5")
            kubectl_result("scale", "vlm", "qwen-vl", "-n", namespace, f"--replicas={replicas}")

    writers = [threading.Thread(target=rival) for _ in range(2)]
    for writer in writers:
        writer.start()
    time.sleep(10)
    stop.set()
    for writer in writers:
        writer.join()
    kubectl("scale", "vlm", "qwen-vl", "-n", namespace, "--replicas=2")
    body = wait_ready(namespace)
    assert body["status"]["readyReplicas"] == 2
    deployment = get_object("deployment", "qwen-vl", namespace)
    assert deployment is not None
    assert deployment["spec"]["replicas"] == 2
    one_of_each_child(namespace)


PORT_LOCK = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "vlm-operator"


def component_pid(component: str) -> int:
    return int((PIDS / f"{component}.pid").read_text())


@contextlib.contextmanager
def component_down(component: str) -> Iterator[None]:
    """The API server is killed, under the machine-wide port lock that up.sh takes, so no other
    local cluster starting meanwhile takes its port. etcd is paused instead (SIGSTOP): a killed
    etcd frees two ports, and an etcd that does not answer is the same outage for the API
    server."""
    pid = component_pid(component)
    if component == "etcd":
        os.kill(pid, signal.SIGSTOP)
        try:
            yield
        finally:
            os.kill(pid, signal.SIGCONT)
        return
    PORT_LOCK.mkdir(parents=True, exist_ok=True)
    with (PORT_LOCK / "cluster-ports.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not Path(f"/proc/{pid}").exists(), 20, f"{component} to exit")
        yield


def restart_cluster() -> str:
    """make cluster after a crash: up.sh restarts what died and keeps the data."""
    result = subprocess.run(
        ["bash", str(REPO_ROOT / "e2e" / "cluster" / "up.sh")],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={
            **os.environ,
            "VLM_CLUSTER_DIR": str(STATE),
            "PATH": f"{Path(KUBECTL).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        },
    )
    assert result.returncode == 0, result.stderr
    return result.stderr


@pytest.fixture
def served(namespace: str, operator: OperatorProcess) -> OperatorProcess:
    """A Ready VisionModel under a running operator whose log is read from this point on."""
    apply_manifest(visionmodel(namespace))
    wait_ready(namespace)
    return operator


@pytest.mark.parametrize("component", ["kube-apiserver", "etcd"])
def test_a_stopped_component_is_survived_without_an_operator_restart(
    component: str, namespace: str, served: OperatorProcess
) -> None:
    before = len(served.logs())
    server = kubectl("config", "view", "--minify", "-o", "jsonpath={.clusters[0].cluster.server}")
    pid = served.pid
    with component_down(component):
        time.sleep(20)  # the operator's watches and requests fail for a while
        # A change made during the outage is refused; one made after it must be acted on.
        assert kubectl_result("get", "vlm", "-n", namespace, "--request-timeout=3s").returncode
        if component == "kube-apiserver":  # make cluster restarts it, still under the lock
            progress = restart_cluster()
            assert "restarting kube-apiserver" in progress, progress
    # The controller manager and the scheduler exit when they lose their leases in a long
    # outage; make cluster restarts whatever exited.
    restart_cluster()
    after = kubectl("config", "view", "--minify", "-o", "jsonpath={.clusters[0].cluster.server}")
    assert after.stdout == server.stdout  # same port, same CA: the kubeconfig still works
    # A change after the restart is acted on by the same process: its watches resumed.
    kubectl("scale", "vlm", "qwen-vl", "-n", namespace, "--replicas=2")
    body = wait_ready(namespace, timeout=180)
    assert body["status"]["readyReplicas"] == 2
    assert served.pid == pid
    one_of_each_child(namespace)
    outage = served.logs()[before:]
    assert outage.count("Traceback") == 0, outage
    errors = [line for line in outage.splitlines() if " ERROR " in line]
    assert len(errors) <= 6, "\n".join(errors)
