"""Scrape the vLLM pods' own /metrics, for clusters without Prometheus."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from prometheus_client.parser import text_string_to_metric_families

from vlm_operator.autoscale.policy import MetricsSample, merge_samples, no_metrics
from vlm_operator.autoscale.signals import (
    GPU_UTILIZATION,
    KV_CACHE_USAGE,
    RUNNING,
    WAITING,
    Fleet,
)
from vlm_operator.autoscale.sources.base import Fetch, http_get


def parse_vllm_metrics(text: str) -> dict[str, float]:
    """The scaling gauges of one /metrics page, summed over model_name labels."""
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in (WAITING, RUNNING, KV_CACHE_USAGE, GPU_UTILIZATION):
                values[sample.name] = values.get(sample.name, 0.0) + float(sample.value)
    return values


class PodScrapeSource:
    """Scrape each ready pod's /metrics directly."""

    def __init__(
        self,
        endpoints: Mapping[str, str],
        timeout: float = 3.0,
        fetch: Fetch = http_get,
    ) -> None:
        """endpoints maps each ready pod's name to its metrics URL."""
        self.endpoints = dict(endpoints)
        self.timeout = timeout
        self._fetch = fetch

    def _read_pod(self, pod: str, url: str) -> MetricsSample:
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
        )

    def read(self, fleet: Fleet, now: float) -> MetricsSample:
        """Sample every pod and add them up; unreachable pods count as not reporting."""
        if not self.endpoints:
            return no_metrics("no ready pods to scrape")
        samples: Sequence[MetricsSample] = [
            self._read_pod(pod, url) for pod, url in sorted(self.endpoints.items())
        ]
        return merge_samples(samples)
