"""Instant queries against the Prometheus HTTP API (the PromQL is in autoscale.signals)."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse

from vlm_operator.autoscale.policy import MetricsSample, no_metrics
from vlm_operator.autoscale.signals import (
    ACTIVATOR_HELD,
    ACTIVATOR_REQUESTS,
    GPU_ACTIVITY_FIELDS,
    GPU_UTILIZATION,
    KV_CACHE_USAGE,
    RATE_WINDOW,
    REQUEST_SUCCESS,
    RUNNING,
    STALE_AFTER_SECONDS,
    WAITING,
    Fleet,
)
from vlm_operator.autoscale.sources.base import Fetch, http_get

ERROR_TYPES = frozenset(
    {"bad_data", "timeout", "canceled", "execution", "unavailable", "not_found", "internal"}
)
"""The errorType values of the Prometheus HTTP API. Only these are reported: the server's own
text is never copied into status or events, since the URL may point at any reachable service."""


class QueryRejectedError(ValueError):
    """Prometheus answered a query with an error; the message is ours, never the server's."""


class PrometheusSource:
    """Instant queries against the Prometheus HTTP API."""

    def __init__(
        self,
        url: str,
        timeout: float = 5.0,
        fetch: Fetch = http_get,
        read_activator: bool = False,
    ) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._fetch = fetch
        self.read_activator = read_activator

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
            error_type = body.get("errorType")
            known = error_type if error_type in ERROR_TYPES else "not a Prometheus answer"
            raise QueryRejectedError(f"{promql}: {known}")
        result = body["data"]["result"]
        if not result:
            return None
        return float(result[0]["value"][1])

    def _gpu_activity(self, fleet: Fleet, now: float) -> tuple[float | None, str]:
        """Summed activity of the fleet's GPUs in percent, from the best profiling field there."""
        for metric in GPU_ACTIVITY_FIELDS:
            ratio_sum = self._query(f"sum({fleet.dcgm_series(metric)})", now)
            if ratio_sum is not None:
                return 100.0 * ratio_sum, metric
        return None, ""

    def _activator(self, fleet: Fleet, now: float) -> tuple[float | None, float | None]:
        if not self.read_activator:
            return None, None
        selector = fleet.activator_selector()
        held = self._query(f"sum({ACTIVATOR_HELD}{{{selector}}})", now)
        rate = self._query(f"sum(rate({ACTIVATOR_REQUESTS}{{{selector}}}[{RATE_WINDOW}]))", now)
        return held, rate

    def read(self, fleet: Fleet, now: float) -> MetricsSample:
        """Sample the fleet through Prometheus."""
        selector = fleet.selector()
        try:
            held, activator_rate = self._activator(fleet, now)
            newest_oldest = self._query(f"min(timestamp({RUNNING}{{{selector}}}))", now)
            if newest_oldest is None:
                return MetricsSample(
                    None, None, None, None, 0,
                    problem=f"Prometheus has no {RUNNING} series for the pods",
                    held_requests=held, activator_requests_per_second=activator_rate,
                )  # fmt: skip
            age = now - newest_oldest
            if age > STALE_AFTER_SECONDS:
                return no_metrics(f"metrics in Prometheus are stale ({age:.0f}s old)")
            pods = self._query(f"count(count by (pod) ({RUNNING}{{{selector}}}))", now)
            activity, field = self._gpu_activity(fleet, now)
            return MetricsSample(
                waiting=self._query(f"sum({WAITING}{{{selector}}})", now),
                running=self._query(f"sum({RUNNING}{{{selector}}})", now),
                kv_cache_usage=self._query(f"avg({KV_CACHE_USAGE}{{{selector}}})", now),
                gpu_utilization_percent=self._query(
                    f"avg({fleet.dcgm_series(GPU_UTILIZATION)})", now
                ),
                reporting_pods=int(pods or 0),
                gpu_activity_percent_sum=activity,
                gpu_activity_field=field,
                held_requests=held,
                activator_requests_per_second=activator_rate,
                completed_per_second=self._query(
                    f"sum(rate({REQUEST_SUCCESS}{{{selector}}}[{RATE_WINDOW}]))", now
                ),
            )
        except urllib.error.HTTPError as error:
            return no_metrics(f"Prometheus at {self.url} is unavailable: HTTP {error.code}")
        except OSError as error:
            return no_metrics(f"Prometheus at {self.url} is unavailable: {error}")
        except QueryRejectedError as error:
            return no_metrics(f"Prometheus at {self.url} rejected a query: {error}")
        except (ValueError, KeyError, TypeError, IndexError):
            return no_metrics(f"Prometheus at {self.url} answered with no query result")
