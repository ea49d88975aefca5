"""The serving signals the policy reads: metric names and which pods a VisionModel owns. Pure.

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

import re
from dataclasses import dataclass

WAITING = "vllm:num_requests_waiting"
RUNNING = "vllm:num_requests_running"
KV_CACHE_USAGE = "vllm:kv_cache_usage_perc"
GPU_UTILIZATION = "DCGM_FI_DEV_GPU_UTIL"

STALE_AFTER_SECONDS = 60.0
"""Samples older than this are stale: the pods stopped reporting or scraping stopped."""


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
