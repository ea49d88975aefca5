"""The serving signals the policy reads: metric names and which pods a VisionModel owns. Pure.

PromQL, for VisionModel `NAME` in namespace `NS` (its pods are named NAME-<hash>-<suffix>; NAME is
escaped twice, for the regular expression and for the PromQL string that holds it):

    sum(vllm:num_requests_waiting{namespace="NS",pod=~"NAME-[a-z0-9]+-[a-z0-9]+"})
    sum(vllm:num_requests_running{...same selector...})
    avg(vllm:kv_cache_usage_perc{...})
    count(count by (pod) (vllm:num_requests_running{...}))   pods reporting
    min(timestamp(vllm:num_requests_running{...}))           oldest sample, for staleness
    sum(rate(vllm:request_success_total{...}[1m]))           requests finished per second

GPU activity comes from dcgm-exporter, whose own `pod` and `namespace` labels name the GPU's user.
Scraped the standard way (no honorLabels) they collide with the exporter pod's target labels and
arrive as `exported_pod`/`exported_namespace`; with honorLabels they stay `pod`/`namespace`. Every
DCGM query matches either:

    sum(DCGM_FI_PROF_SM_ACTIVE{exported_namespace="NS",exported_pod=~"..."}
        or DCGM_FI_PROF_SM_ACTIVE{namespace="NS",pod=~"..."})

The profiling fields (SM_ACTIVE, else GR_ENGINE_ACTIVE) are ratios of the work a GPU can do;
DCGM_FI_DEV_GPU_UTIL, the fallback, only says whether a kernel ran.

The wake-from-zero activator (images/activator) publishes, per VisionModel:

    sum(vlm_activator_held_requests{visionmodel_namespace="NS",visionmodel="NAME"})
    sum(rate(vlm_activator_requests_total{...}[1m]))
"""

from __future__ import annotations

import re
from dataclasses import dataclass

WAITING = "vllm:num_requests_waiting"
RUNNING = "vllm:num_requests_running"
KV_CACHE_USAGE = "vllm:kv_cache_usage_perc"
REQUEST_SUCCESS = "vllm:request_success_total"
"""vLLM's counter of finished requests (one series per finished_reason); its rate plus the
growth of the in-flight count is the arrival rate."""
RATE_WINDOW = "1m"
"""The range of every rate(); the policy measures the in-flight growth over the same minute."""
GPU_UTILIZATION = "DCGM_FI_DEV_GPU_UTIL"
SM_ACTIVE = "DCGM_FI_PROF_SM_ACTIVE"
GR_ENGINE_ACTIVE = "DCGM_FI_PROF_GR_ENGINE_ACTIVE"
GPU_ACTIVITY_FIELDS = (SM_ACTIVE, GR_ENGINE_ACTIVE)
"""DCGM profiling fields that track work done, best first; each is a ratio from 0 to 1."""
ACTIVATOR_HELD = "vlm_activator_held_requests"
ACTIVATOR_REQUESTS = "vlm_activator_requests_total"

STALE_AFTER_SECONDS = 60.0
"""Samples older than this are stale: the pods stopped reporting or scraping stopped."""


@dataclass(frozen=True)
class Fleet:
    """Which pods belong to one VisionModel."""

    namespace: str
    name: str

    def _name_pattern(self) -> str:
        # Escaped for the regular expression, and the backslashes again for the PromQL string
        # literal that holds it (where a lone backslash before `-` is a syntax error).
        name = re.escape(self.name).replace("\\", "\\\\")
        return f"{name}-[a-z0-9]+-[a-z0-9]+"

    def selector(self, prefix: str = "") -> str:
        """The PromQL label matchers of the VisionModel's pods; `prefix` is "exported_" for the
        labels dcgm-exporter's series carry when scraped without honorLabels."""
        return f'{prefix}namespace="{self.namespace}",{prefix}pod=~"{self._name_pattern()}"'

    def dcgm_series(self, metric: str) -> str:
        """A DCGM metric of the fleet's GPUs, whether the pod labels arrived exported or not."""
        return f"{metric}{{{self.selector('exported_')}}} or {metric}{{{self.selector()}}}"

    def activator_selector(self) -> str:
        """The label matchers of the activator's series for this VisionModel."""
        return f'visionmodel_namespace="{self.namespace}",visionmodel="{self.name}"'
