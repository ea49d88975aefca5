"""Instant queries against the Prometheus HTTP API (the PromQL is in autoscale.signals)."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse

from vlm_operator.autoscale.policy import MetricsSample, no_metrics
from vlm_operator.autoscale.signals import (
    GPU_UTILIZATION,
    KV_CACHE_USAGE,
    RUNNING,
    STALE_AFTER_SECONDS,
    WAITING,
    Fleet,
)
from vlm_operator.autoscale.sources.base import Fetch, http_get


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
