"""Metric sources: the I/O half of autoscaling. Each reads a fleet's serving metrics and answers
with a MetricsSample; missing or stale data comes back as a sample with a `problem`, and the
policy holds. May import the pure autoscale modules, never the controllers or kopf."""

from vlm_operator.autoscale.sources.base import DisabledSource, Fetch, MetricSource, http_get
from vlm_operator.autoscale.sources.pods import PodScrapeSource
from vlm_operator.autoscale.sources.prometheus import PrometheusSource

__all__ = [
    "DisabledSource",
    "Fetch",
    "MetricSource",
    "PodScrapeSource",
    "PrometheusSource",
    "http_get",
]
