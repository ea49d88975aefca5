"""A full Service IP range, on a control plane of its own started with a /29 range: the API
server's 500 reaches the status of every VisionModel it refuses, their other children are still
applied, and a freed address is picked up by the backoff retry."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness import (
    CRD_DIR,
    REPO_ROOT,
    OperatorProcess,
    condition,
    kubectl,
    kubectl_result,
    operator_environment,
    visionmodel,
    wait_for,
)

pytestmark = pytest.mark.e2e

SMALL_RANGE = "10.98.0.0/29"
"""Eight addresses: the API server hands out six, and its own `kubernetes` Service holds one."""
MODELS = [f"model-{index}" for index in range(7)]
NAMESPACE = "small-range"


@pytest.fixture(scope="module")
def small_range_kubeconfig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A local control plane of its own whose Service range is a /29."""
    state = tmp_path_factory.mktemp("small-range-cluster")
    env = {**os.environ, "VLM_CLUSTER_DIR": str(state), "VLM_CLUSTER_SERVICE_RANGE": SMALL_RANGE}
    up = subprocess.run(
        ["bash", str(REPO_ROOT / "e2e/cluster/up.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    try:
        if up.returncode != 0:
            pytest.fail(f"the small-range control plane did not start:\n{up.stderr[-3000:]}")
        yield state / "kubeconfig"
    finally:
        subprocess.run(["bash", str(REPO_ROOT / "e2e/cluster/down.sh")], env=env, check=False)


def on(kubeconfig: Path, *args: str, input_text: str | None = None) -> str:
    """kubectl against the small-range control plane."""
    return kubectl("--kubeconfig", str(kubeconfig), *args, input_text=input_text).stdout


def bodies(kubeconfig: Path, kind: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = json.loads(
        on(kubeconfig, "get", kind, "-n", NAMESPACE, "-o", "json")
    )["items"]
    return items


def test_a_full_service_range_reaches_status_and_a_freed_address_is_used(
    small_range_kubeconfig: Path, tmp_path: Path
) -> None:
    kubeconfig = small_range_kubeconfig
    on(kubeconfig, "apply", "--server-side", "-f", str(CRD_DIR))
    wait_for(
        lambda: kubectl_result(
            "--kubeconfig", str(kubeconfig), "wait", "--for=condition=Established",
            "crd/visionmodels.vlm-operator.io", "--timeout=5s",
        ).returncode == 0,
        120,
        "the CRD established",
    )  # fmt: skip
    on(kubeconfig, "create", "namespace", NAMESPACE)
    operator = OperatorProcess(
        NAMESPACE, tmp_path / "operator.log", operator_environment(), kubeconfig=kubeconfig
    )
    operator.start()
    try:
        manifests = [visionmodel(NAMESPACE, name=name) for name in MODELS]
        on(
            kubeconfig,
            "apply",
            "-f",
            "-",
            input_text=json.dumps({"apiVersion": "v1", "kind": "List", "items": manifests}),
        )

        def every_row_stated() -> list[dict[str, Any]] | None:
            found = bodies(kubeconfig, "visionmodel")
            stated = [body for body in found if condition(body, "Ready").get("reason")]
            return found if len(stated) == len(MODELS) else None

        found = wait_for(every_row_stated, 240, "a Ready condition on every VisionModel")
        services = {body["metadata"]["name"] for body in bodies(kubeconfig, "service")}
        refused = [body for body in found if body["metadata"]["name"] not in services]
        # The API server decides how many addresses it has; every VisionModel it refused says so.
        assert refused, f"all {len(MODELS)} Services fitted in {SMALL_RANGE}"
        for body in refused:
            stalled = condition(body, "Stalled")
            assert stalled.get("reason") == "ServiceInternalError", stalled
            assert "range is full" in stalled["message"], stalled["message"]
        deployments = {body["metadata"]["name"] for body in bodies(kubeconfig, "deployment")}
        assert deployments == set(MODELS), (
            "a refused Service kept its Deployment from being applied"
        )
        events = bodies(kubeconfig, "event")
        warned = {
            event["involvedObject"]["name"]
            for event in events
            if event["type"] == "Warning" and event["reason"] == "ServiceInternalError"
        }
        assert warned >= {body["metadata"]["name"] for body in refused}

        served = sorted(services & set(MODELS))
        waiting = refused[0]["metadata"]["name"]
        on(kubeconfig, "delete", "visionmodel", served[0], "-n", NAMESPACE, "--wait=true")

        def freed_address_used() -> bool:
            names = {body["metadata"]["name"] for body in bodies(kubeconfig, "service")}
            return any(body["metadata"]["name"] in names for body in refused)

        wait_for(
            freed_address_used, 120, f"a refused VisionModel (e.g. {waiting}) got the freed address"
        )
    finally:
        operator.stop()
