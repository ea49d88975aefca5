"""Fixtures for end-to-end tests: one real control plane per session, a namespace per test."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from harness import (
    KUBECTL,
    REPO_ROOT,
    OperatorProcess,
    kubectl,
    kubectl_result,
    operator_environment,
)

CLUSTER_DIR = Path(os.environ.get("VLM_CLUSTER_DIR", REPO_ROOT / ".cluster"))
ARTIFACTS = CLUSTER_DIR / "artifacts"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Everything under e2e/ is an end-to-end test."""
    for item in items:
        if Path(str(item.fspath)).is_relative_to(Path(__file__).parent):
            item.add_marker(pytest.mark.e2e)


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


@pytest.fixture(scope="session")
def cluster() -> Iterator[Path]:
    """The local control plane: reused when running, else started and stopped with the session."""
    started_here = not _cluster_running()
    env = {**os.environ, "PATH": f"{Path(KUBECTL).parent}:{os.environ['PATH']}"}
    up = subprocess.run(
        ["bash", str(REPO_ROOT / "e2e" / "cluster" / "up.sh")],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if up.returncode != 0:
        pytest.fail(f"the local control plane did not start:\n{up.stderr}")
    kubeconfig = up.stdout.strip().splitlines()[-1].removeprefix("export KUBECONFIG=")
    previous = os.environ.get("KUBECONFIG")
    os.environ["KUBECONFIG"] = kubeconfig
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(REPO_ROOT / "crds"))
    kubectl(
        "wait",
        "--for=condition=Established",
        "crd/visionmodels.vlm-operator.io",
        "--timeout=60s",
    )
    yield Path(kubeconfig)
    if started_here:
        subprocess.run(["bash", str(REPO_ROOT / "e2e" / "cluster" / "down.sh")], check=False)
    if previous is None:
        os.environ.pop("KUBECONFIG", None)
    else:
        os.environ["KUBECONFIG"] = previous


@pytest.fixture
def namespace(cluster: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace, deleted after the test whatever its outcome."""
    name = f"e2e-{uuid.uuid4().hex[:8]}"
    kubectl("create", "namespace", name)
    kubectl("wait", "--for=create", "serviceaccount/default", "-n", name, "--timeout=30s")
    request.node.test_namespace = name
    yield name
    kubectl_result("delete", "namespace", name, "--wait=false")


@pytest.fixture
def operator(namespace: str, request: pytest.FixtureRequest) -> Iterator[OperatorProcess]:
    """The operator as a real subprocess watching the test's namespace."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    process = OperatorProcess(
        namespace, ARTIFACTS / f"operator-{namespace}.log", operator_environment()
    )
    request.node.operator_process = process
    process.start()
    yield process
    process.stop()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """On failure, attach the operator log, events and objects of the test's namespace."""
    report = yield
    namespace = getattr(item, "test_namespace", None)
    if report.when != "call" or not report.failed or namespace is None:
        return report
    sections = []
    process = getattr(item, "operator_process", None)
    if process is not None:
        sections.append(
            ("operator log (last 150 lines)", "\n".join(process.logs().splitlines()[-150:]))
        )
    for title, args in (
        ("events", ["get", "events", "-n", namespace, "--sort-by=.lastTimestamp"]),
        (
            "objects",
            ["get", "visionmodels,deployments,services,pods", "-n", namespace, "-o", "yaml"],
        ),
    ):
        sections.append((title, kubectl_result(*args).stdout))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    dump = ARTIFACTS / f"{item.name}.txt"
    dump.write_text(
        "\n\n".join(f"== {title}\n{body}" for title, body in sections), encoding="utf-8"
    )
    for title, body in sections:
        report.sections.append((f"e2e {title}", body))
    return report
