"""The operator's autoscaler end to end: real control plane, real Prometheus, simulated vLLM pods.

KWOK pods run no container, so every pod the Deployment creates gets a simulator process on
127.0.0.1 registered in Prometheus under that pod's name. Load goes to the simulators; the
operator reads Prometheus, scales the VisionModel, and the Deployment follows.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from harness import (
    REPO_ROOT,
    OperatorProcess,
    apply_manifest,
    free_port,
    get_object,
    list_objects,
    visionmodel,
    wait_for,
    wait_ready,
)
from prometheus_harness import TINY_PNG, LoggedProcess, PodMirror, Prometheus

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


class ActivatorProcess(LoggedProcess):
    """`python -m activator` on 127.0.0.1 in front of one VisionModel, using the test cluster."""

    def __init__(self, namespace: str, upstream: str, workdir: Path) -> None:
        self.port = free_port()
        self.metrics_port = free_port()
        self.log_path = workdir / "activator.log"
        self.command = [
            sys.executable, "-m", "activator", "--visionmodel", f"{namespace}/qwen-vl",
            "--upstream", upstream, "--host", "127.0.0.1", "--port", str(self.port),
            "--metrics-port", str(self.metrics_port), "--kubeconfig", os.environ["KUBECONFIG"],
            "--wake-timeout-seconds", "90", "--poll-seconds", "0.5",
        ]  # fmt: skip
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        path = os.pathsep.join(
            filter(None, [str(REPO_ROOT / "images" / "activator"), os.environ.get("PYTHONPATH")])
        )
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                self.command, stdout=log, stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONPATH": path},
            )  # fmt: skip
        wait_for(lambda: "listening" in self.logs(), 30, "the activator to listen")

    def chat(self, timeout: float) -> tuple[int, dict[str, Any], float]:
        """One chat completion through the activator: status, body and seconds it took."""
        body = {
            "model": "Qwen/Qwen2.5-VL-7B-Instruct",
            "messages": [{"role": "user", "content": [
                {"type": "text", "text": "Describe the image."},
                {"type": "image_url", "image_url": {"url": TINY_PNG}},
            ]}],
            "max_tokens": 8,
        }  # fmt: skip
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/v1/chat/completions",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        started = time.monotonic()
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.load(response), time.monotonic() - started


def autoscaling_reason(namespace: str) -> str:
    body = get_object("visionmodel", "qwen-vl", namespace) or {}
    return str(body.get("status", {}).get("autoscaling", {}).get("reason", ""))


def test_a_request_at_zero_wakes_the_model_and_it_returns_to_zero(
    namespace: str, operator: OperatorProcess, prometheus: Prometheus, tmp_path: Path
) -> None:
    """The activator holds a request at 0 replicas, raises the VisionModel to 1, forwards the
    request once the mirrored pod serves, and the autoscaler later takes the model back to 0."""
    api_port = free_port()
    activator = ActivatorProcess(namespace, f"http://127.0.0.1:{api_port}", tmp_path)
    activator_target = (f"127.0.0.1:{activator.metrics_port}", {"job": "activator"})
    mirror = PodMirror(
        namespace,
        prometheus,
        tmp_path,
        max_num_seqs=MAX_NUM_SEQS,
        port=api_port,
        extra_targets=[activator_target],
    )
    mirror.start()
    activator.start()
    try:
        apply_manifest(
            visionmodel(
                namespace,
                replicas=0,
                engine={"maxNumSeqs": MAX_NUM_SEQS},
                scaling={
                    "minReplicas": 0,
                    "maxReplicas": 2,
                    "warmReplicas": 0,
                    "wakeOnRequest": True,
                    "scaleDownDelaySeconds": 20,
                    "scaleToZeroAfterSeconds": 60,
                    "metricsSource": {"prometheus": {"url": prometheus.url}},
                },
            )
        )
        wait_for(
            lambda: "the activator raises it to 1" in autoscaling_reason(namespace),
            60,
            "the autoscaler to hold at zero, leaving the wake to the activator",
        )
        assert replicas_of(namespace) == 0

        status, answer, seconds = activator.chat(timeout=120)
        assert status == 200
        assert answer["object"] == "chat.completion"
        assert answer["usage"]["completion_tokens"] == 8
        assert replicas_of(namespace) == 1
        assert "ScaledUp" not in event_reasons(namespace), (
            "the activator, not the autoscaler, woke it"
        )
        wakeups = prometheus.wait_for_series(
            'vlm_activator_wakeups_total{visionmodel="qwen-vl"}', 30
        )
        assert wakeups[0][1] == 1

        wait_for(lambda: replicas_of(namespace) == 0, 240, "the model to go back to zero")
        assert "ScaledDown" in event_reasons(namespace)
        wait_for(
            lambda: autoscaling_reason(namespace).startswith("holding at 0"),
            60,
            "the autoscaler to hold at zero again",
        )
        print(f"woken and answered in {seconds:.1f}s")
    finally:
        activator.stop()
        mirror.stop()
