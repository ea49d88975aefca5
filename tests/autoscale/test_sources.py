"""Metric sources: the Prometheus API answers and pod /metrics pages they turn into samples."""

from __future__ import annotations

import json
import threading
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from vlm_operator.autoscale.signals import Fleet
from vlm_operator.autoscale.sources import Fetch, PodScrapeSource, PrometheusSource

NOW = 1_800_000_000.0
FLEET = Fleet("team-a", "qwen-vl")

VLLM_PAGE = """# HELP vllm:num_requests_waiting Waiting requests.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{model_name="qwen"} 3.0
# HELP vllm:num_requests_running Running requests.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{model_name="qwen"} 12.0
# HELP vllm:kv_cache_usage_perc KV cache usage.
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{model_name="qwen"} 0.25
"""


def prometheus_answers(values: dict[str, float | None], age: float | None = 5.0) -> Fetch:
    """A fetch function playing a Prometheus whose series hold the given values; with age None
    it has no vLLM series at all."""

    def fetch(url: str, timeout: float) -> bytes:
        query = urllib.parse.parse_qs(urllib.parse.urlparse(url).query)["query"][0]
        if query.startswith("min(timestamp("):
            value: float | None = None if age is None else NOW - age
        else:
            value = next((v for key, v in values.items() if query.startswith(key)), None)
        result = [] if value is None else [{"metric": {}, "value": [NOW, str(value)]}]
        return json.dumps({"status": "success", "data": {"result": result}}).encode()

    return fetch


def test_selector_matches_the_deployment_pods_only() -> None:
    # A PromQL string literal holds the regex: its backslashes are doubled.
    assert FLEET.selector() == r'namespace="team-a",pod=~"qwen\\-vl-[a-z0-9]+-[a-z0-9]+"'


def test_prometheus_sample() -> None:
    fetch = prometheus_answers(
        {
            "sum(vllm:num_requests_waiting": 7,
            "sum(vllm:num_requests_running": 30,
            "avg(vllm:kv_cache_usage_perc": 0.4,
            "avg(DCGM_FI_DEV_GPU_UTIL": 97,
            "count(count by (pod) (vllm:num_requests_running": 3,
        }
    )
    sample = PrometheusSource("http://127.0.0.1:9", fetch=fetch).read(FLEET, NOW)
    assert sample.problem == ""
    assert (sample.waiting, sample.running, sample.reporting_pods) == (7, 30, 3)
    assert sample.kv_cache_usage == pytest.approx(0.4)
    assert sample.gpu_utilization_percent == 97


def test_dcgm_queries_match_exported_and_honored_pod_labels() -> None:
    assert FLEET.dcgm_series("DCGM_FI_PROF_SM_ACTIVE") == (
        r'DCGM_FI_PROF_SM_ACTIVE{exported_namespace="team-a",'
        r'exported_pod=~"qwen\\-vl-[a-z0-9]+-[a-z0-9]+"} or '
        r'DCGM_FI_PROF_SM_ACTIVE{namespace="team-a",pod=~"qwen\\-vl-[a-z0-9]+-[a-z0-9]+"}'
    )


QUEUE = {
    "sum(vllm:num_requests_waiting": 0,
    "sum(vllm:num_requests_running": 4,
    "count(count by (pod) (vllm:num_requests_running": 2,
}


@pytest.mark.parametrize(
    ("exported", "field", "activity"),
    [
        ({"sum(DCGM_FI_PROF_SM_ACTIVE": 1.5, "sum(DCGM_FI_PROF_GR": 1.9}, "SM_ACTIVE", 150.0),
        ({"sum(DCGM_FI_PROF_GR_ENGINE_ACTIVE": 1.9}, "GR_ENGINE_ACTIVE", 190.0),
        ({}, "", None),
    ],
    ids=["sm-active-first", "gr-engine-next", "gpu-util-only"],
)
def test_gpu_activity_reads_the_best_profiling_field(
    exported: dict[str, float], field: str, activity: float | None
) -> None:
    fetch = prometheus_answers({**QUEUE, **exported, "avg(DCGM_FI_DEV_GPU_UTIL": 100})
    sample = PrometheusSource("http://127.0.0.1:9", fetch=fetch).read(FLEET, NOW)
    assert sample.gpu_activity_field == (f"DCGM_FI_PROF_{field}" if field else "")
    assert sample.gpu_activity_percent_sum == activity  # ratios summed, in percent of one GPU
    assert sample.gpu_utilization_percent == 100


def test_activator_metrics_are_read_only_when_asked() -> None:
    fetch = prometheus_answers(
        {"sum(vlm_activator_held_requests": 2, "sum(rate(vlm_activator_requests_total": 0.5},
        age=None,
    )
    asked = PrometheusSource("http://127.0.0.1:9", fetch=fetch, read_activator=True)
    at_zero = asked.read(FLEET, NOW)
    assert "no vllm:num_requests_running series" in at_zero.problem
    assert (at_zero.held_requests, at_zero.activator_requests_per_second) == (2, 0.5)
    unasked = PrometheusSource("http://127.0.0.1:9", fetch=fetch).read(FLEET, NOW)
    assert unasked.held_requests is None


def test_prometheus_stale_series_are_a_problem() -> None:
    fetch = prometheus_answers({"sum(": 1, "count(": 1}, age=300)
    sample = PrometheusSource("http://127.0.0.1:9", fetch=fetch).read(FLEET, NOW)
    assert "stale (300s old)" in sample.problem


def test_prometheus_without_series_is_a_problem() -> None:
    def fetch(url: str, timeout: float) -> bytes:
        return json.dumps({"status": "success", "data": {"result": []}}).encode()

    sample = PrometheusSource("http://127.0.0.1:9", fetch=fetch).read(FLEET, NOW)
    assert "no vllm:num_requests_running series" in sample.problem


def test_unreachable_prometheus_is_a_problem() -> None:
    sample = PrometheusSource("http://127.0.0.1:1", timeout=1).read(FLEET, NOW)
    assert "Prometheus at http://127.0.0.1:1 is unavailable" in sample.problem


class _MetricsPage(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = VLLM_PAGE.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        return


@pytest.fixture
def metrics_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _MetricsPage)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/metrics"
    server.shutdown()
    server.server_close()


def test_pod_scrape_sums_pods(metrics_server: str) -> None:
    source = PodScrapeSource({"qwen-vl-a-1": metrics_server, "qwen-vl-a-2": metrics_server})
    sample = source.read(FLEET, NOW)
    assert sample.problem == ""
    assert (sample.waiting, sample.running, sample.reporting_pods) == (6, 24, 2)
    assert sample.kv_cache_usage == pytest.approx(0.25)
    assert sample.gpu_utilization_percent is None


def test_pod_scrape_counts_unreachable_pods_as_not_reporting(metrics_server: str) -> None:
    source = PodScrapeSource(
        {"qwen-vl-a-1": metrics_server, "qwen-vl-a-2": "http://127.0.0.1:1/metrics"}, timeout=1
    )
    sample = source.read(FLEET, NOW)
    assert sample.reporting_pods == 1
    assert sample.running == 12


def test_pod_scrape_without_pods_is_a_problem() -> None:
    assert PodScrapeSource({}).read(FLEET, NOW).problem == "no ready pods to scrape"


class _RejectingPrometheus(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps(
            {"status": "error", "errorType": "bad_data", "error": "parse error at char 9"}
        ).encode()
        self.send_response(400)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        return


def test_a_rejected_query_is_a_problem_with_the_error_type_only() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _RejectingPrometheus)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        sample = PrometheusSource(url, timeout=5).read(FLEET, NOW)
    finally:
        server.shutdown()
        server.server_close()
    assert f"Prometheus at {url} rejected a query" in sample.problem
    assert "bad_data" in sample.problem
    # The server's own text never reaches status: the URL may point at any reachable service.
    assert "parse error at char 9" not in sample.problem


def test_prometheus_reads_the_completion_rate_over_a_minute() -> None:
    asked: list[str] = []
    answers = prometheus_answers(
        {
            "sum(vllm:num_requests_waiting": 0,
            "sum(vllm:num_requests_running": 8,
            "sum(rate(vllm:request_success_total": 4.5,
        }
    )

    def fetch(url: str, timeout: float) -> bytes:
        asked.append(urllib.parse.parse_qs(urllib.parse.urlparse(url).query)["query"][0])
        return answers(url, timeout)

    sample = PrometheusSource("http://127.0.0.1:9", fetch=fetch).read(FLEET, NOW)
    assert sample.completed_per_second == 4.5
    assert f"sum(rate(vllm:request_success_total{{{FLEET.selector()}}}[1m]))" in asked


def counter_page(stopped: int, cut_at_length: int) -> bytes:
    """A vLLM /metrics page whose finished-request counter has one series per finished_reason."""
    return (
        VLLM_PAGE
        + "# HELP vllm:request_success Count of successfully processed requests.\n"
        + "# TYPE vllm:request_success counter\n"
        + f'vllm:request_success_total{{finished_reason="stop",model_name="qwen"}} {stopped}.0\n'
        + 'vllm:request_success_total{finished_reason="length",model_name="qwen"} '
        + f"{cut_at_length}.0\n"
    ).encode()


def test_pod_scrape_rates_the_completion_counter_between_reads() -> None:
    pages = iter([counter_page(60, 40), counter_page(80, 50), counter_page(3, 2)])
    readings: dict[str, list[tuple[float, float]]] = {}

    def fetch(url: str, timeout: float) -> bytes:
        return next(pages)

    def read(now: float) -> float | None:
        source = PodScrapeSource(
            {"qwen-vl-a-1": "http://127.0.0.1:9"}, fetch=fetch, readings=readings
        )
        return source.read(FLEET, now).completed_per_second

    # First read: 60 + 40 = 100 finished, no rate yet. 30 s later 130: 30 / 30 s = 1 per second.
    assert read(NOW) is None
    assert read(NOW + 30) == 1.0
    # The counter went back to 5: the pod restarted, so no rate until the next read.
    assert read(NOW + 45) is None
    assert readings == {"qwen-vl-a-1": [(NOW + 45, 5.0)]}
