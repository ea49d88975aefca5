"""Metric sources: the Prometheus HTTP API, or the vLLM pods' own /metrics. Both do I/O.

Every source answers with a MetricsSample; when data is missing or stale the sample carries a
`problem` instead of numbers, and the policy holds.

PromQL, for VisionModel `NAME` in namespace `NS` (its pods are named NAME-<hash>-<suffix>; NAME is
escaped twice, for the regular expression and for the PromQL string that holds it):

    sum(vllm:num_requests_waiting{namespace="NS",pod=~"NAME-[a-z0-9]+-[a-z0-9]+"})
    sum(vllm:num_requests_running{...same selector...})
    avg(vllm:kv_cache_usage_perc{...})
    avg(DCGM_FI_DEV_GPU_UTIL{...})
    count(count by (pod) (vllm:num_requests_running{...}))   pods reporting
    min(timestamp(vllm:num_requests_running{...}))           oldest sample, for staleness
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from prometheus_client.parser import text_string_to_metric_families

from vlm_operator.autoscale.policy import MetricsSample, merge_samples, no_metrics

WAITING = "vllm:num_requests_waiting"
RUNNING = "vllm:num_requests_running"
KV_CACHE_USAGE = "vllm:kv_cache_usage_perc"
GPU_UTILIZATION = "DCGM_FI_DEV_GPU_UTIL"

STALE_AFTER_SECONDS = 60.0
"""Samples older than this are stale: the pods stopped reporting or scraping stopped."""

Fetch = Callable[[str, float], bytes]


def http_get(url: str, timeout: float) -> bytes:
    """GET a URL and return the body; raises OSError on any failure."""
    with urllib.request.urlopen(url, timeout=timeout) as response:
        body: bytes = response.read()
        return body


@dataclass(frozen=True)
class Fleet:
    """Which pods belong to one VisionModel."""

    namespace: str
    name: str

    def selector(self) -> str:
        """The PromQL label matchers of the VisionModel's pods.

        The name is escaped for the regular expression, and the backslashes again for the PromQL
        string literal that holds it (where a lone backslash before `-` is a syntax error)."""
        name = re.escape(self.name).replace("\\", "\\\\")
        return f'namespace="{self.namespace}",pod=~"{name}-[a-z0-9]+-[a-z0-9]+"'


class MetricSource(Protocol):
    """Anything that can sample a fleet's serving metrics."""

    def read(self, fleet: Fleet, now: float) -> MetricsSample:
        """The fleet's current metrics, or a sample whose problem says why there are none."""
        ...


class PrometheusSource:
    """Instant queries against the Prometheus HTTP API."""

    def __init__(self, url: str, timeout: float = 5.0, fetch: Fetch = http_get) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._fetch = fetch

    def _query(self, promql: str, now: float) -> float | None:
        query = urllib.parse.urlencode({"query": promql, "time": f"{now:.3f}"})
        try:
            raw = self._fetch(f"{self.url}/api/v1/query?{query}", self.timeout)
        except urllib.error.HTTPError as error:
            if error.code != 400:
                raise
            raw = error.read()  # Prometheus explains a rejected query in a JSON body
        body = json.loads(raw)
        if body.get("status") != "success":
            raise ValueError(f"{promql}: {body.get('error', 'query failed')}")
        result = body["data"]["result"]
        if not result:
            return None
        return float(result[0]["value"][1])

    def read(self, fleet: Fleet, now: float) -> MetricsSample:
        """Sample the fleet through Prometheus."""
        selector = fleet.selector()
        try:
            newest_oldest = self._query(f"min(timestamp({RUNNING}{{{selector}}}))", now)
            if newest_oldest is None:
                return no_metrics(f"Prometheus has no {RUNNING} series for the pods")
            age = now - newest_oldest
            if age > STALE_AFTER_SECONDS:
                return no_metrics(f"metrics in Prometheus are stale ({age:.0f}s old)")
            pods = self._query(f"count(count by (pod) ({RUNNING}{{{selector}}}))", now)
            return MetricsSample(
                waiting=self._query(f"sum({WAITING}{{{selector}}})", now),
                running=self._query(f"sum({RUNNING}{{{selector}}})", now),
                kv_cache_usage=self._query(f"avg({KV_CACHE_USAGE}{{{selector}}})", now),
                gpu_utilization_percent=self._query(f"avg({GPU_UTILIZATION}{{{selector}}})", now),
                reporting_pods=int(pods or 0),
            )
        except OSError as error:
            return no_metrics(f"Prometheus at {self.url} is unavailable: {error}")
        except (ValueError, KeyError) as error:
            return no_metrics(f"Prometheus at {self.url} rejected a query: {error}")


def parse_vllm_metrics(text: str) -> dict[str, float]:
    """The scaling gauges of one /metrics page, summed over model_name labels."""
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in (WAITING, RUNNING, KV_CACHE_USAGE, GPU_UTILIZATION):
                values[sample.name] = values.get(sample.name, 0.0) + float(sample.value)
    return values


class PodScrapeSource:
    """Scrape each ready pod's /metrics directly, for clusters without Prometheus."""

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


class DisabledSource:
    """A source that never reads, with the reason why."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def read(self, fleet: Fleet, now: float) -> MetricsSample:
        """Always a sample without metrics."""
        return no_metrics(self.reason)
