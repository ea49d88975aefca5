"""What every metric source is, the HTTP fetch they share, and the source that never reads."""

from __future__ import annotations

import urllib.request
from collections.abc import Callable
from typing import Protocol

from vlm_operator.autoscale.policy import MetricsSample, no_metrics
from vlm_operator.autoscale.signals import Fleet

Fetch = Callable[[str, float], bytes]


def http_get(url: str, timeout: float) -> bytes:
    """GET a URL and return the body; raises OSError on any failure."""
    with urllib.request.urlopen(url, timeout=timeout) as response:
        body: bytes = response.read()
        return body


class MetricSource(Protocol):
    """Anything that can sample a fleet's serving metrics."""

    def read(self, fleet: Fleet, now: float) -> MetricsSample:
        """The fleet's current metrics, or a sample whose problem says why there are none."""
        ...


class DisabledSource:
    """A source that never reads, with the reason why."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def read(self, fleet: Fleet, now: float) -> MetricsSample:
        """Always a sample without metrics."""
        return no_metrics(self.reason)
