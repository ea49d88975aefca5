"""The operator's autoscaler end to end: real control plane, real Prometheus, simulated vLLM pods.

KWOK pods run no container, so every pod the Deployment creates gets a simulator process on
127.0.0.1 registered in Prometheus under that pod's name. Load goes to the simulators; the
operator reads Prometheus, scales the VisionModel, and the Deployment follows.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from harness import (
    OperatorProcess,
    apply_manifest,
    get_object,
    list_objects,
    visionmodel,
    wait_for,
    wait_ready,
)
from prometheus_harness import PodMirror, Prometheus

pytestmark = pytest.mark.e2e

MAX_NUM_SEQS = 2


def drive_load(mirror: PodMirror, rate: float, seconds: float, stop: threading.Event) -> None:
    """Open-loop load spread round-robin over the serving pods, bounded in time and count."""
    deadline = time.monotonic() + seconds
    sent = 0
    with ThreadPoolExecutor(max_workers=32) as pool:
        while time.monotonic() < deadline and not stop.is_set() and sent < rate * seconds:
            pods = mirror.serving()
            if pods:
                pool.submit(pods[sent % len(pods)].chat, 1, 64, 30.0)
                sent += 1
            time.sleep(1 / rate)


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Prometheus]:
    with Prometheus(tmp_path / "prometheus") as server:
        yield server


@pytest.fixture
def mirror(namespace: str, prometheus: Prometheus, tmp_path: Path) -> Iterator[PodMirror]:
    pods = PodMirror(namespace, prometheus, tmp_path, max_num_seqs=MAX_NUM_SEQS)
    pods.start()
    yield pods
    pods.stop()


def scaled_visionmodel(namespace: str, prometheus_url: str) -> dict[str, Any]:
    return visionmodel(
        namespace,
        replicas=1,
        engine={"maxNumSeqs": MAX_NUM_SEQS},
        scaling={
            "minReplicas": 1,
            "maxReplicas": 3,
            "warmReplicas": 0,
            "queueDepthTarget": 2,
            "scaleDownDelaySeconds": 20,
            "metricsSource": {"prometheus": {"url": prometheus_url}},
        },
    )


def replicas_of(namespace: str) -> int:
    body = get_object("visionmodel", "qwen-vl", namespace) or {}
    return int(body.get("spec", {}).get("replicas", 0))


def event_reasons(namespace: str) -> set[str]:
    events = list_objects("event", namespace, field_selector="involvedObject.kind=VisionModel")
    return {event["reason"] for event in events}


def test_load_scales_up_and_back_down_and_missing_metrics_hold(
    namespace: str, operator: OperatorProcess, prometheus: Prometheus, mirror: PodMirror
) -> None:
    apply_manifest(scaled_visionmodel(namespace, prometheus.url))
    wait_ready(namespace)
    prometheus.wait_for_series(f'vllm:num_requests_running{{namespace="{namespace}"}}', 60)
    wait_for(
        lambda: (
            "steady at 1"
            in str(
                (get_object("visionmodel", "qwen-vl", namespace) or {})
                .get("status", {})
                .get("autoscaling", {})
                .get("reason", "")
            )
        ),
        60,
        "the autoscaler to read idle metrics",
    )

    stop_load = threading.Event()
    load = threading.Thread(target=drive_load, args=(mirror, 4.0, 120.0, stop_load), daemon=True)
    load.start()
    try:
        wait_for(lambda: replicas_of(namespace) >= 2, 90, "a scale-up under load")
        body = wait_ready(namespace, timeout=90)
        assert body["status"]["readyReplicas"] >= 2
        assert "ScaledUp" in event_reasons(namespace)
        deployment = get_object("deployment", "qwen-vl", namespace)
        assert deployment is not None
        assert deployment["spec"]["replicas"] == replicas_of(namespace)
    finally:
        stop_load.set()
        load.join(timeout=60)

    wait_for(lambda: replicas_of(namespace) == 1, 120, "the scale-down once the load stops")
    assert "ScaledDown" in event_reasons(namespace)
    autoscaling = (get_object("visionmodel", "qwen-vl", namespace) or {})["status"]["autoscaling"]
    assert autoscaling["desiredReplicas"] == 1
    assert autoscaling["lastScaleTime"]

    prometheus.stop()

    def holding() -> dict[str, Any] | None:
        status = (get_object("visionmodel", "qwen-vl", namespace) or {}).get("status", {})
        reason = status.get("autoscaling", {}).get("reason", "")
        return status if reason.startswith("holding at 1") else None

    status = wait_for(holding, 60, "the autoscaler to hold without Prometheus")
    assert "unavailable" in status["autoscaling"]["reason"]
    assert replicas_of(namespace) == 1
    assert "ScalingHeld" in event_reasons(namespace)
