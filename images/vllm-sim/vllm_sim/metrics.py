"""The /metrics pages: vLLM's own metric names and types, and dcgm-exporter's GPU utilization."""

from __future__ import annotations

import functools

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from vllm_sim.dcgm import GpuIdentity, UtilizationSampler
from vllm_sim.engine import Engine, SimRequest

VLLM_LABELS = ("model_name", "engine")
"""vLLM's V1 engine labels every metric with the served model name and the engine index."""

TIME_TO_FIRST_TOKEN_BUCKETS = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
)  # fmt: skip
REQUEST_LATENCY_BUCKETS = (
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0,
    240.0, 480.0, 960.0, 1920.0, 7680.0,
)  # fmt: skip


class VllmMetrics:
    """The engine's gauges, read at scrape time, and its per-request histograms and counters."""

    def __init__(self, engine: Engine, model_name: str) -> None:
        self.registry = CollectorRegistry()
        labels = {"model_name": model_name, "engine": "0"}

        def gauge(name: str, documentation: str) -> Gauge:
            return Gauge(name, documentation, VLLM_LABELS, registry=self.registry)

        gauge("vllm:num_requests_running", "Number of requests in model execution batches.").labels(
            **labels
        ).set_function(lambda: engine.running)
        gauge("vllm:num_requests_waiting", "Number of requests waiting to be processed.").labels(
            **labels
        ).set_function(lambda: engine.waiting)
        gauge("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.").labels(
            **labels
        ).set_function(engine.kv_cache_usage)

        def histogram(name: str, documentation: str, buckets: tuple[float, ...]) -> Histogram:
            return Histogram(
                name, documentation, VLLM_LABELS, registry=self.registry, buckets=buckets
            )

        self._time_to_first_token = histogram(
            "vllm:time_to_first_token_seconds",
            "Histogram of time to first token in seconds.",
            TIME_TO_FIRST_TOKEN_BUCKETS,
        ).labels(**labels)
        self._e2e_latency = histogram(
            "vllm:e2e_request_latency_seconds",
            "Histogram of end-to-end request latency in seconds.",
            REQUEST_LATENCY_BUCKETS,
        ).labels(**labels)
        self._queue_time = histogram(
            "vllm:request_queue_time_seconds",
            "Histogram of time spent waiting in the queue, in seconds.",
            REQUEST_LATENCY_BUCKETS,
        ).labels(**labels)
        self._success = Counter(
            "vllm:request_success",
            "Count of successfully processed requests.",
            (*VLLM_LABELS, "finished_reason"),
            registry=self.registry,
        )
        self._labels = labels
        self._prompt_tokens = Counter(
            "vllm:prompt_tokens", "Number of prefill tokens processed.", VLLM_LABELS,
            registry=self.registry,
        ).labels(**labels)  # fmt: skip
        self._generation_tokens = Counter(
            "vllm:generation_tokens", "Number of generation tokens processed.", VLLM_LABELS,
            registry=self.registry,
        ).labels(**labels)  # fmt: skip

    def record(self, request: SimRequest) -> None:
        """Account one finished request."""
        if (
            request.admitted_at is None
            or request.first_token_at is None
            or request.finished_at is None
        ):
            raise ValueError(f"request {request.request_id} has not finished")
        self._queue_time.observe(request.admitted_at - request.arrival)
        self._time_to_first_token.observe(request.first_token_at - request.arrival)
        self._e2e_latency.observe(request.finished_at - request.arrival)
        self._success.labels(**self._labels, finished_reason=request.finish_reason).inc()
        self._prompt_tokens.inc(request.prompt_tokens)
        self._generation_tokens.inc(request.generated)

    def exposition(self) -> bytes:
        """The /metrics page in Prometheus' text format."""
        return generate_latest(self.registry)


DCGM_LABELS = (
    "gpu", "UUID", "pci_bus_id", "device", "modelName", "Hostname", "container", "namespace", "pod",
)  # fmt: skip


class DcgmMetrics:
    """DCGM_FI_DEV_GPU_UTIL and, when profiling is on, DCGM_FI_PROF_SM_ACTIVE per GPU, with the
    pod and namespace of the replica using it."""

    def __init__(
        self,
        sampler: UtilizationSampler,
        identity: GpuIdentity,
        activity: UtilizationSampler | None = None,
    ) -> None:
        self.registry = CollectorRegistry()
        utilization = Gauge(
            "DCGM_FI_DEV_GPU_UTIL", "GPU utilization (in %).", DCGM_LABELS, registry=self.registry
        )
        sm_active = (
            Gauge(
                "DCGM_FI_PROF_SM_ACTIVE",
                "The ratio of cycles an SM has at least 1 warp assigned (in %).",
                DCGM_LABELS,
                registry=self.registry,
            )
            if activity is not None
            else None
        )
        for gpu in range(sampler.gpus):
            labels = {
                "gpu": str(gpu),
                "UUID": f"GPU-sim-{identity.namespace}-{identity.pod}-{gpu}",
                "pci_bus_id": f"00000000:{gpu + 1:02X}:00.0",
                "device": f"nvidia{gpu}",
                "modelName": identity.model_name,
                "Hostname": identity.hostname,
                "container": identity.container,
                "namespace": identity.namespace,
                "pod": identity.pod,
            }
            utilization.labels(**labels).set_function(functools.partial(sampler.value, gpu))
            if sm_active is not None and activity is not None:
                sm_active.labels(**labels).set_function(
                    functools.partial(lambda index: activity.value(index) / 100.0, gpu)
                )

    def exposition(self) -> bytes:
        """The exporter's /metrics page."""
        return generate_latest(self.registry)
