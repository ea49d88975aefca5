"""The vLLM simulator under dozens of simultaneous clients, as a load test drives it.

The server runs in this process on 127.0.0.1 with an ephemeral port; every wait is bounded.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from vllm_sim.dcgm import GpuIdentity
from vllm_sim.engine import EngineConfig
from vllm_sim.server import ApiHandler, Simulator, SimulatorServer, serve_in_background

MODEL = "Qwen/Qwen2.5-VL-7B-Instruct"
CLIENTS = 64
MAX_NUM_SEQS = 8
TIMEOUT = 20.0


@pytest.fixture
def api_url() -> Iterator[str]:
    """A simulator whose requests each take a quarter of a second, behind its API server."""
    config = EngineConfig(max_num_seqs=MAX_NUM_SEQS, decode_tokens_per_second=40.0)
    simulator = Simulator(config, MODEL, GpuIdentity(pod="qwen-vl-0", namespace="team-a"))
    server = SimulatorServer(("127.0.0.1", 0), ApiHandler, simulator)
    simulator.start()
    serve_in_background(server)
    yield server.url
    server.shutdown()
    server.server_close()
    simulator.stop()


def sample_value(url: str, name: str) -> float:
    """The value of the first sample called `name` on the simulator's /metrics."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=TIMEOUT) as response:
        page = response.read().decode()
    for family in text_string_to_metric_families(page):
        for sample in family.samples:
            if sample.name == name:
                return float(sample.value)
    raise AssertionError(f"{name} is not exposed")


def chat(url: str, start: threading.Barrier) -> str:
    """One chat completion sent when every client is ready; its status, or the error."""
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Describe the scene in one sentence."}],
        "max_tokens": 10,
    }
    request = urllib.request.Request(
        f"{url}/v1/chat/completions",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    start.wait(TIMEOUT)
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            return str(response.status)
    except OSError as error:
        return repr(error)


def test_dozens_of_simultaneous_clients_are_all_served_and_queue_beyond_the_batch(
    api_url: str,
) -> None:
    start = threading.Barrier(CLIENTS + 1)
    outcomes: list[str] = []
    lock = threading.Lock()

    def client() -> None:
        outcome = chat(api_url, start)
        with lock:
            outcomes.append(outcome)

    clients = [threading.Thread(target=client) for _ in range(CLIENTS)]
    for thread in clients:
        thread.start()
    start.wait(TIMEOUT)

    observed_waiting = 0.0
    while any(thread.is_alive() for thread in clients) and observed_waiting == 0:
        observed_waiting = sample_value(api_url, "vllm:num_requests_waiting")
        time.sleep(0.02)
    for thread in clients:
        thread.join(TIMEOUT)

    assert not any(thread.is_alive() for thread in clients)
    assert outcomes == ["200"] * CLIENTS
    assert observed_waiting > 0
    assert sample_value(api_url, "vllm:num_requests_waiting") == 0
    assert sample_value(api_url, "vllm:request_success_total") == CLIENTS
