"""Several operators with kopf peering, as the chart runs them with replicaCount > 1: exactly one
acts, the next takes over when it stops, and a missing peering object stops the operator at start
instead of leaving it unpeered."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chart_harness import (
    CHART_DIR,
    E2E_VALUES,
    helm,
    service_account_kubeconfig,
    values_file,
)
from harness import (
    REPO_ROOT,
    OperatorProcess,
    apply_manifest,
    get_object,
    kubectl,
    operator_environment,
    visionmodel,
    wait_for,
    wait_ready,
)

RELEASE = "vlm-peering"
PEERING = "vlm-operator"


@pytest.fixture
def peered_release(namespace: str, tmp_path: Path) -> Iterator[Path]:
    """A second release of the chart with two replicas, serving only the test's namespace: its
    Role there grants the peering object, which the chart creates. Yields a kubeconfig with its
    ServiceAccount's token."""
    values = {
        **E2E_VALUES,
        "replicaCount": 2,
        "watchNamespaces": [namespace],
        "crd": {"install": False},  # the session's release owns the CRD
    }
    path = values_file(values, tmp_path)
    helm("install", RELEASE, str(CHART_DIR), "-n", namespace, "-f", str(path), "--wait")
    try:
        yield service_account_kubeconfig(
            namespace, f"{RELEASE}-vlm-operator", tmp_path / "peered.kubeconfig"
        )
    finally:
        helm("uninstall", RELEASE, "-n", namespace, "--wait")


def peers(namespace: str) -> dict[str, Any]:
    """kopf's keep-alives in the peering object: identity -> priority, lifetime, last seen."""
    body = get_object("kopfpeering.kopf.dev", PEERING, namespace) or {}
    status: dict[str, Any] = body.get("status") or {}
    return status


def test_two_peered_operators_one_acts_and_the_other_takes_over(
    namespace: str, peered_release: Path, tmp_path: Path
) -> None:
    env = operator_environment()
    first, second = (
        OperatorProcess(
            namespace, tmp_path / f"{name}.log", env, kubeconfig=peered_release, peering=PEERING
        )
        for name in ("first", "second")
    )
    first.start()
    second.start()
    try:
        registered = wait_for(
            lambda: peers(namespace) if len(peers(namespace)) == 2 else None,
            60,
            "both operators in the peering object",
        )
        priorities = [peer["priority"] for peer in registered.values()]
        assert len(set(priorities)) == 2, registered

        apply_manifest(visionmodel(namespace))
        wait_ready(namespace)
        # Several resyncs (every 3 s) later, only the first has reconciled.
        wait_for(lambda: first.reconcile_count() >= 5, 60, "resyncs by the first operator")
        assert second.reconcile_count() == 0, second.logs()

        first.stop()  # leaves the peering on the way out
        kubectl("scale", "visionmodel", "qwen-vl", "-n", namespace, "--replicas=2")
        wait_for(
            lambda: (
                (get_object("deployment", "qwen-vl", namespace) or {})
                .get("status", {})
                .get("readyReplicas")
                == 2
            ),
            90,
            "the second operator to scale the Deployment to 2",
        )
        assert second.reconcile_count() > 0
        wait_ready(namespace)
    finally:
        first.stop()
        second.stop()


def test_a_missing_peering_object_stops_the_operator_at_start(namespace: str) -> None:
    """Without --standalone, kopf would otherwise wait forever for the peering object."""
    result = subprocess.run(
        [sys.executable, "-m", "vlm_operator", "run", "--namespace", namespace,
         "--peering", "absent", "--metrics-port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=operator_environment(),
        cwd=REPO_ROOT,
    )  # fmt: skip
    assert result.returncode == 2
    assert f"KopfPeering absent in {namespace}" in result.stderr
    assert "does not exist" in result.stderr
