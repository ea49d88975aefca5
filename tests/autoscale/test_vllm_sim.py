"""The vLLM simulator: endpoints, queueing, vLLM's metric names and types, and DCGM's quirks.

Every server listens on 127.0.0.1 with an ephemeral port; every wait is bounded.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from vllm_sim.dcgm import GpuIdentity, UtilizationSampler
from vllm_sim.engine import Engine, EngineConfig
from vllm_sim.server import (
    ApiHandler,
    DcgmHandler,
    Simulator,
    SimulatorServer,
    serve_in_background,
)
from vlm_operator.autoscale.signals import Fleet
from vlm_operator.autoscale.sources import PodScrapeSource

MODEL = "Qwen/Qwen2.5-VL-7B-Instruct"
IMAGE = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
TIMEOUT = 10.0
SIMULATOR_PATH = Path(__file__).resolve().parents[2] / "images" / "vllm-sim"

Servers = Callable[..., tuple[Simulator, str, str]]


@pytest.fixture
def servers() -> Iterator[Servers]:
    """Start simulators with their API and DCGM servers on loopback; stop them afterwards."""
    started: list[tuple[Simulator, list[SimulatorServer]]] = []

    def start(
        startup_seconds: float = 0.0, dcgm_profiling: bool = True, **engine: Any
    ) -> tuple[Simulator, str, str]:
        config = EngineConfig(**{"tokens_per_image": 100, **engine})
        simulator = Simulator(
            config,
            MODEL,
            GpuIdentity(pod="qwen-vl-5d9f7-abcde", namespace="team-a"),
            startup_seconds=startup_seconds,
            max_images_per_request=4,
            dcgm_interval_seconds=0.2,
            dcgm_profiling=dcgm_profiling,
        )
        api = SimulatorServer(("127.0.0.1", 0), ApiHandler, simulator)
        dcgm = SimulatorServer(("127.0.0.1", 0), DcgmHandler, simulator)
        simulator.start()
        for server in (api, dcgm):
            serve_in_background(server)
        started.append((simulator, [api, dcgm]))
        return simulator, api.url, dcgm.url

    yield start
    for simulator, http_servers in started:
        for server in http_servers:
            server.shutdown()
            server.server_close()
        simulator.stop()


def get(url: str) -> tuple[int, bytes]:
    """GET, returning the status even for errors."""
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def chat(base: str, content: Any, max_tokens: int | None = 8, **extra: Any) -> tuple[int, Any]:
    """POST one chat completion and decode the answer."""
    body = {"model": MODEL, "messages": [{"role": "user", "content": content}], **extra}
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    request = urllib.request.Request(
        f"{base}/v1/chat/completions",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def gauges(base: str) -> dict[str, float]:
    """Every sample of a /metrics page by name (the last one wins)."""
    status, page = get(f"{base}/metrics")
    assert status == 200
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(page.decode())
        for sample in family.samples
    }


def in_background(count: int, call: Callable[[], object]) -> list[threading.Thread]:
    """Run `call` on `count` client threads; join them before the test ends."""
    clients = [threading.Thread(target=call) for _ in range(count)]
    for client in clients:
        client.start()
    return clients


def join(clients: list[threading.Thread]) -> None:
    """Wait for client threads, boundedly."""
    for client in clients:
        client.join(TIMEOUT)
    assert not any(client.is_alive() for client in clients)


def wait_until(condition: Callable[[], bool], timeout: float = TIMEOUT) -> None:
    """Poll a condition every 20 ms until it holds or the timeout passes."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail("condition not met in time")
        time.sleep(0.02)


def test_everything_answers_503_until_the_model_has_loaded(servers: Servers) -> None:
    _, api, dcgm = servers(startup_seconds=0.5)
    assert get(f"{api}/health")[0] == 503
    assert get(f"{api}/metrics")[0] == 503
    assert chat(api, "hello")[0] == 503
    assert get(f"{dcgm}/metrics")[0] == 200, "the GPU exporter is a separate DaemonSet"
    wait_until(lambda: get(f"{api}/health")[0] == 200)
    status, body = get(f"{api}/v1/models")
    assert status == 200
    assert [model["id"] for model in json.loads(body)["data"]] == [MODEL]


def test_image_parts_count_image_tokens(servers: Servers) -> None:
    _, api, _ = servers(decode_tokens_per_second=1000)
    text = "Compare these two charts."
    status, answer = chat(api, [{"type": "text", "text": text}, IMAGE, IMAGE], max_tokens=5)
    assert status == 200
    assert answer["usage"] == {
        "prompt_tokens": math.ceil(len(text) / 4) + 2 * 100,
        "completion_tokens": 5,
        "total_tokens": math.ceil(len(text) / 4) + 2 * 100 + 5,
    }
    assert answer["choices"][0]["finish_reason"] == "length"
    status, natural = chat(api, "hello", max_tokens=None)
    assert (status, natural["choices"][0]["finish_reason"]) == (200, "stop")
    reasons = {
        sample.labels["finished_reason"]: sample.value
        for family in text_string_to_metric_families(get(f"{api}/metrics")[1].decode())
        if family.name == "vllm:request_success"
        for sample in family.samples
        if sample.name.endswith("_total")
    }
    assert reasons == {"length": 1.0, "stop": 1.0}


@pytest.mark.parametrize(
    ("content", "extra", "status"),
    [
        ([IMAGE] * 5, {}, 400),
        ([{"type": "input_audio", "input_audio": {}}], {}, 400),
        ([{"type": "image_url", "image_url": {}}], {}, 400),
        ("hello", {"stream": True}, 400),
        ("hello", {"model": "other"}, 404),
        ("hello", {"max_tokens": 40_000}, 400),
    ],
    ids=["too-many-images", "audio", "image-without-url", "stream", "unknown-model", "too-long"],
)
def test_bad_requests_are_refused(
    servers: Servers, content: Any, extra: dict[str, Any], status: int
) -> None:
    _, api, _ = servers()
    assert chat(api, content, **extra)[0] == status


def test_requests_beyond_the_batch_queue_and_metrics_show_it(servers: Servers) -> None:
    _, api, _ = servers(max_num_seqs=2, decode_tokens_per_second=100)
    answers: list[int] = []
    clients = in_background(5, lambda: answers.append(chat(api, [IMAGE], max_tokens=30)[0]))
    batch_full_and_queued = {"vllm:num_requests_running": 2, "vllm:num_requests_waiting": 3}
    wait_until(lambda: batch_full_and_queued.items() <= gauges(api).items())
    join(clients)
    assert answers == [200] * 5
    after = gauges(api)
    assert after["vllm:num_requests_waiting"] == after["vllm:num_requests_running"] == 0
    assert after["vllm:request_success_total"] == 5
    assert after["vllm:time_to_first_token_seconds_count"] == 5
    # The last two waited for a whole request (30 tokens at 100/s) or two.
    assert after["vllm:request_queue_time_seconds_sum"] > 0.3


def test_kv_cache_bounds_admission_before_the_batch_does(servers: Servers) -> None:
    simulator, api, _ = servers(max_num_seqs=8, decode_tokens_per_second=100, kv_cache_tokens=300)
    clients = in_background(2, lambda: chat(api, [IMAGE, IMAGE], max_tokens=20))
    wait_until(lambda: simulator.engine.waiting == 1)
    metrics = gauges(api)
    assert metrics["vllm:num_requests_running"] == 1
    assert 0.6 < metrics["vllm:kv_cache_usage_perc"] <= 1.0
    join(clients)


def test_metric_names_types_and_labels_are_vllms(servers: Servers) -> None:
    _, api, dcgm = servers(decode_tokens_per_second=1000)
    assert chat(api, "hello", max_tokens=3)[0] == 200
    families = {
        family.name: family
        for family in text_string_to_metric_families(get(f"{api}/metrics")[1].decode())
    }
    expected = {
        "vllm:num_requests_waiting": "gauge",
        "vllm:num_requests_running": "gauge",
        "vllm:kv_cache_usage_perc": "gauge",
        "vllm:time_to_first_token_seconds": "histogram",
        "vllm:e2e_request_latency_seconds": "histogram",
        "vllm:request_success": "counter",
    }
    for name, kind in expected.items():
        assert families[name].type == kind, name
        assert all(s.labels["model_name"] == MODEL for s in families[name].samples), name
    utilization, sm_active = text_string_to_metric_families(get(f"{dcgm}/metrics")[1].decode())
    assert (utilization.name, sm_active.name) == ("DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_PROF_SM_ACTIVE")
    assert utilization.type == sm_active.type == "gauge"
    for family in (utilization, sm_active):
        labels = family.samples[0].labels
        assert (labels["pod"], labels["namespace"]) == ("qwen-vl-5d9f7-abcde", "team-a")
    # A ratio, as dcgm-exporter publishes profiling fields; nothing has run for a full interval.
    assert 0.0 <= sm_active.samples[0].value <= 1.0


def test_without_profiling_the_exporter_publishes_gpu_util_only(servers: Servers) -> None:
    _, _, dcgm = servers(dcgm_profiling=False)
    families = text_string_to_metric_families(get(f"{dcgm}/metrics")[1].decode())
    assert [family.name for family in families] == ["DCGM_FI_DEV_GPU_UTIL"]


def test_pod_scrape_source_reads_the_simulator(servers: Servers) -> None:
    _, api, _ = servers(max_num_seqs=1, decode_tokens_per_second=50)
    clients = in_background(3, lambda: chat(api, "hi", max_tokens=25))
    source = PodScrapeSource({"qwen-vl-5d9f7-abcde": f"{api}/metrics"})
    wait_until(lambda: source.read(Fleet("team-a", "qwen-vl"), time.time()).waiting == 2)
    sample = source.read(Fleet("team-a", "qwen-vl"), time.time())
    assert (sample.running, sample.reporting_pods, sample.problem) == (1.0, 1, "")
    join(clients)


def busy_share(engine: Engine, during: Callable[[], object]) -> float:
    """The share of wall time the simulated GPU ran kernels while `during` ran."""
    start_busy, start = engine.gpu_busy_seconds(), time.monotonic()
    during()
    return (engine.gpu_busy_seconds() - start_busy) / (time.monotonic() - start)


def test_one_sequence_keeps_the_gpu_as_busy_as_a_full_batch() -> None:
    """Misleading signal 1: utilization reads ~100% with a single request in a 16-wide batch."""
    engine = Engine(EngineConfig(max_num_seqs=16, decode_tokens_per_second=200))
    engine.start()
    try:
        request = engine.submit(prompt=50, images=0, max_tokens=60)
        share = busy_share(engine, lambda: request.done.wait(TIMEOUT))
    finally:
        engine.stop()
    assert request.done.is_set()
    assert share > 0.9


def work_and_busy_shares(config: EngineConfig, sequences: int) -> tuple[float, float]:
    """SM-activity and busy shares of wall time while `sequences` equal requests decode."""
    engine = Engine(config)
    engine.start()
    try:
        requests = [engine.submit(prompt=1, images=0, max_tokens=80) for _ in range(sequences)]
        start_work, start_busy = engine.gpu_work_seconds(), engine.gpu_busy_seconds()
        start = time.monotonic()
        for request in requests:
            request.done.wait(TIMEOUT)
        elapsed = time.monotonic() - start
        work = (engine.gpu_work_seconds() - start_work) / elapsed
        busy = (engine.gpu_busy_seconds() - start_busy) / elapsed
    finally:
        engine.stop()
    return work, busy


def test_sm_activity_grows_with_the_work_while_utilization_reads_busy() -> None:
    """One sequence of a 16-wide batch does 1/16 of a full batch's work per step (the step time
    does not grow with the batch at factor 1), yet the GPU is busy all the time."""
    config = EngineConfig(max_num_seqs=16, decode_tokens_per_second=400)
    one_work, one_busy = work_and_busy_shares(config, 1)
    full_work, full_busy = work_and_busy_shares(config, 16)
    # Busy shares are of wall time, which a loaded machine stretches; the work-to-busy ratios
    # come from the engine's own step accounting and do not depend on it.
    assert one_busy > 0.5
    assert full_busy > 0.5
    assert one_work / one_busy == pytest.approx(1 / 16, abs=0.02)
    assert full_work / full_busy == pytest.approx(1, abs=0.05)


def test_a_slower_full_batch_step_counts_its_tokens_not_its_time() -> None:
    """Factor 2: a step over 8 of 16 sequences takes (1 + 7/15)/rate and produces 8 tokens,
    against 16 tokens in 2/rate for a full batch: an SM share of 8/16 x 2 / (1 + 7/15)."""
    config = EngineConfig(max_num_seqs=16, decode_tokens_per_second=400, full_batch_step_factor=2)
    assert config.decode_step_seconds(8) == pytest.approx((1 + 7 / 15) / 400)
    work, busy = work_and_busy_shares(config, 8)
    assert work / busy == pytest.approx(0.5 * 2 / (1 + 7 / 15), abs=0.04)


def test_host_bound_engine_queues_while_the_gpu_idles() -> None:
    """Misleading signal 2: image preprocessing stalls the GPU; the queue grows, utilization low."""
    config = EngineConfig(
        max_num_seqs=4,
        decode_tokens_per_second=1000,
        prefill_tokens_per_second=1_000_000,
        tokens_per_image=10,
        host_seconds_per_image=0.01,
    )
    engine = Engine(config)
    engine.start()
    waiting_seen: list[int] = []
    try:
        requests = [engine.submit(prompt=50, images=4, max_tokens=5) for _ in range(16)]

        def drain() -> None:
            for request in requests:
                waiting_seen.append(engine.waiting)
                request.done.wait(TIMEOUT)

        share = busy_share(engine, drain)
    finally:
        engine.stop()
    assert max(waiting_seen) >= 8
    assert share < 0.3


def test_exporter_publishes_the_last_interval_so_an_idle_gpu_still_reads_busy() -> None:
    """Misleading signal 3: the value lags by up to a collection interval."""
    busy = {"seconds": 0.0, "working": True}
    last = [time.monotonic()]

    def busy_seconds() -> float:
        now = time.monotonic()
        if busy["working"]:
            busy["seconds"] += now - last[0]
        last[0] = now
        return busy["seconds"]

    sampler = UtilizationSampler(busy_seconds, interval_seconds=0.3, noise_percent=0.0)
    sampler.start()
    try:
        wait_until(lambda: sampler.value(0) == 100.0)
        busy["working"] = False
        assert sampler.value(0) == 100.0, "idle now, still reported busy"
        wait_until(lambda: sampler.value(0) == 0.0)
    finally:
        sampler.stop()


def test_noise_only_on_gpus_that_worked_and_values_are_whole_percentages() -> None:
    sampler = UtilizationSampler(lambda: 0.0, gpus=4, noise_percent=5.0, seed=3)
    sampler.sample(0.0)
    assert [sampler.value(gpu) for gpu in range(4)] == [0.0] * 4
    sampler.sample(0.5)
    values = [sampler.value(gpu) for gpu in range(4)]
    assert all(value == round(value) and 30 <= value <= 70 for value in values)
    assert len(set(values)) > 1


def test_command_line_takes_vllm_serve_arguments_and_reports_its_ports() -> None:
    command = [
        sys.executable, "-m", "vllm_sim", "serve", MODEL, "--port", "0", "--dcgm-port", "0",
        "--served-model-name", "qwen", "--max-num-seqs", "4", "--gpu-memory-utilization", "0.9",
    ]  # fmt: skip
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(SIMULATOR_PATH)},
    )
    try:
        assert process.stdout is not None
        urls = dict(process.stdout.readline().split() for _ in range(2))
        status, body = get(f"{urls['api']}/v1/models")
        assert status == 200
        assert json.loads(body)["data"][0]["id"] == "qwen"
        assert get(f"{urls['dcgm']}/metrics")[0] == 200
    finally:
        process.terminate()
        _, errors = process.communicate(timeout=TIMEOUT)
    assert process.returncode == 0
    assert "--gpu-memory-utilization 0.9" in errors
