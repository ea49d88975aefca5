"""Scrape the vLLM pods' own /metrics, for clusters without Prometheus."""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping, Sequence

from prometheus_client.parser import text_string_to_metric_families

from vlm_operator.autoscale.policy import MetricsSample, merge_samples, no_metrics
from vlm_operator.autoscale.signals import (
    GPU_UTILIZATION,
    KV_CACHE_USAGE,
    REQUEST_SUCCESS,
    RUNNING,
    WAITING,
    Fleet,
)
from vlm_operator.autoscale.sources.base import Fetch, http_get


def parse_vllm_metrics(text: str) -> dict[str, float]:
    """The scaling gauges and the finished-request counter of one /metrics page, summed over
    their labels (model_name, finished_reason)."""
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in (WAITING, RUNNING, KV_CACHE_USAGE, GPU_UTILIZATION, REQUEST_SUCCESS):
                values[sample.name] = values.get(sample.name, 0.0) + float(sample.value)
    return values


RATE_WINDOW_SECONDS = 60.0
"""Completions are counted over the last minute, as Prometheus' rate(...[1m])."""

CounterReadings = MutableMapping[str, list[tuple[float, float]]]
"""Per pod, (time, vllm:request_success_total) of its reads over the last minute."""


def completion_rate(readings: list[tuple[float, float]], now: float, total: float) -> float | None:
    """Requests finished per second since the oldest read of the last minute; None on the
    first read or after the counter restarted (the pod did)."""
    past = [item for item in readings if now - RATE_WINDOW_SECONDS <= item[0] < now]
    if not past or total < past[0][1]:
        return None
    since, before = past[0]
    return (total - before) / (now - since)


class PodScrapeSource:
    """Scrape each ready pod's /metrics directly."""

    def __init__(
        self,
        endpoints: Mapping[str, str],
        timeout: float = 3.0,
        fetch: Fetch = http_get,
        readings: CounterReadings | None = None,
    ) -> None:
        """endpoints maps each ready pod's name to its metrics URL; readings, kept by the caller
        between reads, are what a rate needs (without them no completion rate is given)."""
        self.endpoints = dict(endpoints)
        self.timeout = timeout
        self._fetch = fetch
        self.readings: CounterReadings = {} if readings is None else readings

    def _completed_per_second(self, pod: str, total: float | None, now: float) -> float | None:
        if total is None:
            return None
        kept = [item for item in self.readings.get(pod, []) if item[0] >= now - RATE_WINDOW_SECONDS]
        rate = completion_rate(kept, now, total)
        if rate is None:
            kept = []  # first read, or a restarted counter: start counting again
        self.readings[pod] = [*kept, (now, total)]
        return rate

    def _read_pod(self, pod: str, url: str, now: float) -> MetricsSample:
        try:
            values = parse_vllm_metrics(self._fetch(url, self.timeout).decode())
        except (OSError, ValueError) as error:
            return no_metrics(f"pod {pod}: {error}")
        if RUNNING not in values or WAITING not in values:
            return no_metrics(f"pod {pod} exposes no vLLM queue metrics")
        return MetricsSample(
            waiting=values[WAITING],
            running=values[RUNNING],
            kv_cache_usage=values.get(KV_CACHE_USAGE),
            gpu_utilization_percent=values.get(GPU_UTILIZATION),
            reporting_pods=1,
            completed_per_second=self._completed_per_second(pod, values.get(REQUEST_SUCCESS), now),
        )

    def read(self, fleet: Fleet, now: float) -> MetricsSample:
        """Sample every pod and add them up; unreachable pods count as not reporting."""
        if not self.endpoints:
            return no_metrics("no ready pods to scrape")
        samples: Sequence[MetricsSample] = [
            self._read_pod(pod, url, now) for pod, url in sorted(self.endpoints.items())
        ]
        for gone in set(self.readings) - set(self.endpoints):
            del self.readings[gone]
        return merge_samples(samples)
