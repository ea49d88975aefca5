"""Debian's Prometheus scraping simulated vLLM pods on loopback: the autoscaler's PromQL answers.

No cluster is needed: the pods are `python -m vllm_sim` processes, registered through file_sd with
the `namespace` and `pod` labels real pods would have.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from prometheus_harness import Prometheus, Sample, SimulatedPod

pytestmark = pytest.mark.e2e

NAMESPACE = "vision-team"
MODEL = "Qwen/Qwen2.5-VL-7B-Instruct"
TARGET_TIMEOUT = 20.0
"""Prometheus applies file_sd changes to its scrape loops about every 5 s, then scrapes each 1 s."""

PodFactory = Callable[..., SimulatedPod]


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    """One Prometheus for the module, started from the project's unpacked Debian package."""
    with Prometheus(tmp_path_factory.mktemp("prometheus")) as server:
        yield server


@pytest.fixture
def simulated_pods(tmp_path: Path) -> Iterator[PodFactory]:
    """Starts simulated pods on demand and stops them after the test."""
    started: list[SimulatedPod] = []

    def start(
        pod: str,
        max_num_seqs: int = 4,
        decode_tokens_per_second: float = 50.0,
        startup_seconds: float = 0.0,
    ) -> SimulatedPod:
        simulated = SimulatedPod(
            pod,
            NAMESPACE,
            tmp_path,
            model_name=MODEL,
            max_num_seqs=max_num_seqs,
            decode_tokens_per_second=decode_tokens_per_second,
            startup_seconds=startup_seconds,
        )
        started.append(simulated)
        simulated.start()
        return simulated

    yield start
    for simulated in started:
        simulated.stop()


def value(samples: list[Sample]) -> float:
    """The value of a single-sample result."""
    assert len(samples) == 1, samples
    return samples[0][1]


def test_targets_must_be_on_loopback(prometheus: Prometheus) -> None:
    with pytest.raises(ValueError, match=r"127\.0\.0\.0/8"):
        prometheus.set_targets([("10.0.0.7:8000", {"pod": "p"})])


def test_health_is_503_until_the_model_has_loaded(simulated_pods: PodFactory) -> None:
    loading_seconds = 3.0
    started = time.monotonic()
    pod = simulated_pods("qwen-vl-loading", startup_seconds=loading_seconds)

    statuses = []
    while time.monotonic() - started < loading_seconds - 0.5:
        statuses.append(pod.health_status())
        time.sleep(0.1)
    assert statuses
    assert set(statuses) == {503}

    deadline = time.monotonic() + 15
    while pod.health_status() != 200:
        assert time.monotonic() < deadline, "the simulated pod never finished loading"
        time.sleep(0.1)
    assert time.monotonic() - started >= loading_seconds

    result = pod.send_requests(4, concurrency=4, images=2, max_tokens=8)
    assert (result.succeeded, result.failed) == (4, 0), result.errors
    answer = pod.chat(images=3, max_tokens=5)
    assert answer["object"] == "chat.completion"
    assert answer["usage"]["completion_tokens"] == 5
    assert answer["usage"]["prompt_tokens"] >= 3 * 256


def test_prometheus_sees_queue_depth_and_gpu_utilization_under_load(
    prometheus: Prometheus, simulated_pods: PodFactory
) -> None:
    # Two sequences at a time, 10 tokens at 20 tokens/s: about 4 requests/s per pod.
    pods = [
        simulated_pods(f"qwen-vl-{index}", max_num_seqs=2, decode_tokens_per_second=20)
        for index in range(2)
    ]
    prometheus.set_targets([target for pod in pods for target in pod.targets()])
    in_namespace = f'namespace="{NAMESPACE}"'
    prometheus.wait_for_series(
        f"count(up{{{in_namespace}}} == 1)", TARGET_TIMEOUT, lambda up: value(up) == 4
    )

    waiting = prometheus.wait_for_series(f"vllm:num_requests_waiting{{{in_namespace}}}", 5)
    assert {labels["pod"] for labels, _ in waiting} == {pod.pod for pod in pods}
    assert {labels["model_name"] for labels, _ in waiting} == {MODEL}
    assert all(queued == 0 for _, queued in waiting)
    utilization = prometheus.query(f"DCGM_FI_DEV_GPU_UTIL{{{in_namespace}}}")
    assert {(labels["pod"], labels["gpu"]) for labels, _ in utilization} == {
        (pod.pod, "0") for pod in pods
    }
    assert all(labels["modelName"] for labels, _ in utilization)

    # 6 requests/s per pod for 5 s, above the ~4/s a pod serves: the queue must grow.
    loads = [pod.start_load(rate_per_second=6, duration_seconds=5, max_tokens=10) for pod in pods]
    queued = prometheus.wait_for_series(
        f"sum(vllm:num_requests_waiting{{{in_namespace}}})", 10, lambda sums: value(sums) > 0
    )
    busy = prometheus.wait_for_series(
        f"avg(DCGM_FI_DEV_GPU_UTIL{{{in_namespace}}})", 10, lambda avgs: value(avgs) > 50
    )
    results = [load.wait(60) for load in loads]
    assert all(result.failed == result.dropped == 0 for result in results), results
    served = sum(result.succeeded for result in results)
    assert served == 60

    prometheus.wait_for_series(
        f"sum(vllm:num_requests_waiting{{{in_namespace}}}) + "
        f"sum(vllm:num_requests_running{{{in_namespace}}})",
        10,
        lambda sums: value(sums) == 0,
    )
    prometheus.wait_for_series(
        f"sum(vllm:request_success_total{{{in_namespace}}})",
        5,
        lambda sums: value(sums) == served,
    )
    latency = prometheus.query(f"sum(vllm:e2e_request_latency_seconds_count{{{in_namespace}}})")
    assert value(latency) == served
    print(
        f"queued={value(queued):.0f} gpu_util={value(busy):.0f}% served={served} "
        f"rate={sum(result.requests_per_second for result in results):.1f}/s"
    )
