"""Fixtures for end-to-end tests: one real control plane per session, a namespace per test, the
operator as a subprocess, and a report of the namespace when a test fails.

The chart is installed (upgraded) into that control plane with the pinned helm at the start of a
session: it brings the CRD and the ServiceAccount whose token every test operator runs with.

The control plane is reused when one is already running in the state directory (`make cluster`,
VLM_CLUSTER_DIR, default .cluster/); otherwise the session starts it with e2e/cluster/up.sh and
stops it at the end. VLM_KEEP_CLUSTER=1 keeps a cluster the session started.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
import uuid
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from chart_harness import (
    RELEASE_NAMESPACE,
    SERVICE_ACCOUNT,
    install_release,
    service_account_kubeconfig,
)
from harness import (
    KUBECTL,
    REPO_ROOT,
    OperatorProcess,
    kubectl,
    kubectl_result,
    namespace_report,
    operator_environment,
)

CLUSTER_SCRIPTS = REPO_ROOT / "e2e" / "cluster"
CLUSTER_DIR = Path(os.environ.get("VLM_CLUSTER_DIR", REPO_ROOT / ".cluster")).resolve()
ARTIFACTS = CLUSTER_DIR / "artifacts"
NAMESPACE_KEY = pytest.StashKey[str]()
OPERATOR_KEY = pytest.StashKey[OperatorProcess]()
FAILED_KEY = pytest.StashKey[bool]()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Everything under e2e/ is an end-to-end test."""
    here = Path(__file__).parent
    for item in items:
        if item.path.is_relative_to(here):
            item.add_marker(pytest.mark.e2e)


def _cluster_env() -> dict[str, str]:
    return {
        **os.environ,
        "PATH": f"{Path(KUBECTL).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "VLM_CLUSTER_DIR": str(CLUSTER_DIR),
    }


def _cluster_running() -> bool:
    kubeconfig = CLUSTER_DIR / "kubeconfig"
    if not kubeconfig.exists():
        return False
    probe = subprocess.run(
        [KUBECTL, "--kubeconfig", str(kubeconfig), "get", "--raw", "/readyz"],
        capture_output=True,
        check=False,
        timeout=15,
    )
    return probe.returncode == 0


def _say(config: pytest.Config, line: str) -> None:
    """Write a line straight to the terminal, past pytest's output capture."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line(line)


def _start_cluster(config: pytest.Config) -> Path:
    """Run up.sh, showing its progress (a first run builds Kubernetes); return the kubeconfig."""
    process = subprocess.Popen(
        ["bash", str(CLUSTER_SCRIPTS / "up.sh")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_cluster_env(),
    )
    assert process.stdout is not None
    assert process.stderr is not None
    progress = []
    for line in process.stderr:
        progress.append(line)
        _say(config, line.rstrip())  # a first start builds Kubernetes for about ten minutes
    output = process.stdout.read()
    if process.wait() != 0:
        pytest.fail(f"the local control plane did not start:\n{''.join(progress)}")
    last = output.strip().splitlines()[-1]
    assert last.startswith("export KUBECONFIG="), f"unexpected output of up.sh: {output!r}"
    return Path(last.removeprefix("export KUBECONFIG="))


def _stop_demo_operator(config: pytest.Config) -> None:
    """`make demo` leaves an operator watching every namespace: it would race the operators the
    tests start, so it is stopped first (and the terminal says so)."""
    pid_file = CLUSTER_DIR / "operator.pid"
    if not pid_file.exists():
        return
    pid = int(pid_file.read_text().strip() or 0)
    pid_file.unlink()
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    _say(config, f"e2e: stopped the demo's operator (pid {pid}) so it cannot race the tests")
    for _ in range(100):
        if not Path(f"/proc/{pid}").exists():
            return
        time.sleep(0.2)
    os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="session")
def cluster(request: pytest.FixtureRequest) -> Iterator[Path]:
    """The local control plane's kubeconfig; KUBECONFIG points at it for the whole session."""
    _stop_demo_operator(request.config)
    started_here = not _cluster_running()
    kubeconfig = _start_cluster(request.config)
    previous = os.environ.get("KUBECONFIG")
    os.environ["KUBECONFIG"] = str(kubeconfig)
    try:
        # The chart brings the CRD, and the ServiceAccount every test operator runs as.
        install_release()
        yield kubeconfig
    finally:
        if started_here and os.environ.get("VLM_KEEP_CLUSTER") != "1":
            subprocess.run(
                ["bash", str(CLUSTER_SCRIPTS / "down.sh")], env=_cluster_env(), check=False
            )
        if previous is None:
            os.environ.pop("KUBECONFIG", None)
        else:
            os.environ["KUBECONFIG"] = previous


@pytest.fixture
def namespace(cluster: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace, deleted after the test whatever its outcome."""
    name = f"e2e-{uuid.uuid4().hex[:8]}"
    kubectl("create", "namespace", name)
    request.node.stash[NAMESPACE_KEY] = name
    try:
        # The controller manager gives every namespace its default service account.
        kubectl("wait", "--for=create", "serviceaccount/default", "-n", name, "--timeout=30s")
        yield name
    finally:
        _delete_namespace(name)


def _delete_namespace(name: str) -> None:
    """Delete without waiting; objects of our CRD lose any finalizer first, since the operator
    that would remove it has already stopped."""
    listed = kubectl_result("get", "visionmodels", "-n", name, "-o", "name")
    for obj in listed.stdout.split() if listed.returncode == 0 else []:
        kubectl_result(
            "patch", obj, "-n", name, "--type=merge", "-p", '{"metadata":{"finalizers":null}}'
        )
    kubectl_result("delete", "namespace", name, "--wait=false", "--ignore-not-found")


@pytest.fixture
def operator_kubeconfig(cluster: Path, tmp_path: Path) -> Path:
    """A kubeconfig whose only credential is a fresh token of the chart's ServiceAccount."""
    return service_account_kubeconfig(
        RELEASE_NAMESPACE, SERVICE_ACCOUNT, tmp_path / "operator.kubeconfig"
    )


@pytest.fixture
def operator(
    namespace: str, operator_kubeconfig: Path, request: pytest.FixtureRequest
) -> Iterator[OperatorProcess]:
    """The operator as a real subprocess watching the test's namespace, with the chart's
    ServiceAccount identity and nothing more; `@pytest.mark.operator_env(NAME=value)` adds
    environment variables (operator configuration) for one test. Its log is kept under
    .cluster/artifacts/ when the test fails."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    log_path = ARTIFACTS / f"operator-{namespace}.log"
    marker = request.node.get_closest_marker("operator_env")
    overrides: dict[str, str] = dict(marker.kwargs) if marker is not None else {}
    process = OperatorProcess(
        namespace, log_path, operator_environment(**overrides), kubeconfig=operator_kubeconfig
    )
    request.node.stash[OPERATOR_KEY] = process
    try:
        process.start()
        yield process
    finally:
        process.stop()
        if not request.node.stash.get(FAILED_KEY, False):
            log_path.unlink(missing_ok=True)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """On failure, attach the operator log, events and objects of the test's namespace to the
    report and write them to .cluster/artifacts/<test>.txt."""
    report = yield
    if report.when not in ("setup", "call") or not report.failed:
        return report
    item.stash[FAILED_KEY] = True
    namespace = item.stash.get(NAMESPACE_KEY, None)
    if namespace is None:
        return report
    sections: list[tuple[str, str]] = []
    process = item.stash.get(OPERATOR_KEY, None)
    if process is not None:
        tail = "\n".join(process.logs().splitlines()[-200:])
        sections.append((f"operator log (last 200 lines of {process.log_path})", tail))
    try:
        sections += namespace_report(namespace)
    except (OSError, subprocess.SubprocessError) as error:
        sections.append(("namespace report", f"could not be collected: {error}"))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    dump = ARTIFACTS / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', item.nodeid)}.txt"
    dump.write_text(
        "\n\n".join(f"== {title}\n{body}" for title, body in sections), encoding="utf-8"
    )
    for title, body in sections:
        report.sections.append((f"e2e {title}", body))
    report.sections.append(("e2e artifacts", str(dump)))
    return report
