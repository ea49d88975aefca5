"""The autoscaling policy: metrics and recent history in, desired replicas and a reason out.

Pure: no clock, no I/O. The operator's timer and the fleet benchmark call the same `decide`.

Signals, each used for what it is good at:
- the arrival rate, when vLLM's completion counter is read: requests finished per second
  (rate of vllm:request_success_total) plus the growth of the in-flight count over the same
  minute. By Little's law the running count is the completion rate times the time a request
  runs, so the fleet needs running x arrivals / completions sequences in flight. This grows the
  fleet to the arrival rate in one decision when a burst saturates it, and it does not count
  the backlog left queued on a replica after a burst (which only that replica can serve) as
  demand for new ones;
- without that counter, in-flight requests (running + waiting) against the plan's batch size
  give the replicas the load needs, and the queue depth per replica says when demand has
  outrun capacity and scale-up is urgent;
- KV-cache usage catches long requests that fill memory before they fill the batch;
- GPU activity from DCGM's profiling fields (SM_ACTIVE, else GR_ENGINE_ACTIVE), which grow with
  the work done, sizes the fleet against `gpuUtilizationTargetPercent` as an HPA would, and keeps
  it from scaling down while the GPUs are busier than the target: it sees prefill and image
  encoding that fill a GPU before they fill the batch;
- DCGM_FI_DEV_GPU_UTIL, the fallback when the profiling fields are absent, is busy-or-idle (one
  decoding sequence reads as busy as a full batch), so it is never sized on; it only confirms
  idleness before a scale to zero;
- requests held by the wake-from-zero activator are the demand while no replica is ready.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from vlm_operator.api.v1alpha1 import ScalingSpec

TOLERANCE = 0.1
"""Demand within 10% of the current replicas changes nothing (as the HPA does)."""

BATCH_TARGET_FRACTION = 0.8
"""Scale up past 80% of each replica's batch, keeping room for bursts between decisions."""

SCALE_DOWN_BATCH_FRACTION = 0.7
"""Scale down only once the load would fill fewer replicas to 70%: the gap to 80% is the
hysteresis band that keeps Poisson noise from flapping a replica in and out."""

KV_USAGE_TARGET = 0.85
"""Aim to keep each replica's KV cache at most 85% used."""

IDLE_GPU_UTILIZATION_PERCENT = 5.0
"""Below this the GPUs do no work at all."""

AT_ZERO = "scaled to zero, no pod reports load; set replicas or raise minReplicas to wake it"
AT_ZERO_WAKES = "scaled to zero; the activator raises it to 1 on the next request"

ARRIVAL_WINDOW_SECONDS = 60.0
"""The arrival rate is measured over the same minute as the completion rate (rate[1m])."""

MAX_SCALE_UP_STEP = 4
"""At most this many replicas are added per decision, or the current count if larger."""


@dataclass(frozen=True)
class MetricsSample:
    """Fleet-wide metrics of one VisionModel at one moment; None means the signal is missing."""

    waiting: float | None
    running: float | None
    kv_cache_usage: float | None
    """Mean fraction (0-1) of the KV cache used per replica."""
    gpu_utilization_percent: float | None
    reporting_pods: int
    """Pods whose metrics were read."""
    problem: str = ""
    """Why metrics are missing or stale; empty when they are fine."""
    gpu_activity_percent_sum: float | None = None
    """DCGM profiling activity summed over the fleet's GPUs, in percent of one GPU."""
    gpu_activity_field: str = ""
    """The DCGM field that activity came from; empty when only GPU_UTIL (or nothing) exists."""
    held_requests: float | None = None
    """Requests the wake-from-zero activator holds until a replica is ready."""
    activator_requests_per_second: float | None = None
    """Requests per second arriving through the activator."""
    completed_per_second: float | None = None
    """Requests the fleet finished per second over the last minute
    (rate of vllm:request_success_total)."""


@dataclass(frozen=True)
class FleetState:
    """What the cluster runs now."""

    spec_replicas: int
    ready_replicas: int
    existing_replicas: int
    """Pods that exist, ready or still loading the model."""
    max_num_seqs: int
    """Sequences one replica runs at once, from the plan."""
    gpus_per_replica: int = 1


@dataclass(frozen=True)
class History:
    """What the policy remembers between decisions."""

    recommendations: tuple[tuple[float, int, int], ...] = ()
    """(time, scale-up target, scale-down target) of recent decisions, before stabilization."""
    last_scale_down: float | None = None
    last_traffic: float | None = None
    recent_load: tuple[tuple[float, float, float | None], ...] = ()
    """(time, running + waiting, summed GPU activity) of the last minute's decisions."""


@dataclass(frozen=True)
class Decision:
    """The outcome of one evaluation."""

    desired_replicas: int
    demand_replicas: int
    warm_replicas: int
    reason: str
    metrics: dict[str, float] = field(default_factory=dict)
    history: History = History()
    gpu_signal: str = ""
    """Which GPU metric was read and what it was used for."""

    def changes(self, spec_replicas: int) -> bool:
        """Whether the decision asks for a different spec.replicas."""
        return self.desired_replicas != spec_replicas


def _clamp(value: int, scaling: ScalingSpec) -> int:
    return max(scaling.min_replicas, min(scaling.max_replicas, value))


def gpu_activity_mean(sample: MetricsSample, fleet: FleetState) -> float | None:
    """Mean activity of the ready replicas' GPUs in percent (loading pods' GPUs read 0)."""
    if sample.gpu_activity_percent_sum is None or not sample.gpu_activity_field:
        return None
    gpus = max(1, fleet.ready_replicas) * max(1, fleet.gpus_per_replica)
    return sample.gpu_activity_percent_sum / gpus


def gpu_signal(sample: MetricsSample, scaling: ScalingSpec) -> str:
    """What the decision made of the GPU metrics, for status.autoscaling.gpuSignal."""
    if sample.gpu_activity_field:
        return (
            f"{sample.gpu_activity_field}: sized on against the "
            f"{scaling.gpu_utilization_target_percent}% target"
        )
    if sample.gpu_utilization_percent is not None:
        return (
            "DCGM_FI_DEV_GPU_UTIL only (no DCGM profiling fields): busy-or-idle, "
            "used only to confirm idleness"
        )
    return "no DCGM metrics: sized on the engine's queue alone"


def _metrics_used(sample: MetricsSample, fleet: FleetState) -> dict[str, float]:
    values = {
        "waiting": sample.waiting,
        "running": sample.running,
        "kvCacheUsage": sample.kv_cache_usage,
        "gpuUtilizationPercent": sample.gpu_utilization_percent,
        "gpuActivityPercent": gpu_activity_mean(sample, fleet),
        "heldRequests": sample.held_requests,
        "activatorRequestsPerSecond": sample.activator_requests_per_second,
        "completedPerSecond": sample.completed_per_second,
    }
    return {name: round(value, 2) for name, value in values.items() if value is not None}


def arrival_rate(sample: MetricsSample, history: History, now: float) -> tuple[float, float] | None:
    """(arrivals, completions) per second: what finished over the last minute plus how much the
    in-flight count grew over it, since every request that arrived either finished or is still
    in flight. None without the completion counter or before any request finished."""
    completed = sample.completed_per_second
    if completed is None or completed <= 0 or sample.running is None or sample.waiting is None:
        return None
    in_flight = sample.running + sample.waiting
    past = [item for item in history.recent_load if now - ARRIVAL_WINDOW_SECONDS <= item[0] < now]
    if not past:
        return completed, completed
    since, before, _ = past[0]
    return max(0.0, completed + (in_flight - before) / (now - since)), completed


def minute_of_gpu_activity(sample: MetricsSample, history: History, now: float) -> MetricsSample:
    """The sample with its GPU activity averaged over the minute the rates cover, so that one
    interval's Poisson noise does not buy a replica that the scale-down window then keeps."""
    if sample.gpu_activity_percent_sum is None:
        return sample
    values = [
        activity
        for time, _, activity in history.recent_load
        if now - ARRIVAL_WINDOW_SECONDS <= time < now and activity is not None
    ]
    values.append(sample.gpu_activity_percent_sum)
    return replace(sample, gpu_activity_percent_sum=sum(values) / len(values))


def gpu_demand(
    sample: MetricsSample, fleet: FleetState, scaling: ScalingSpec, load_factor: float = 1.0
) -> int | None:
    """Replicas that would run the GPUs at the target activity, HPA-style, with the activity
    scaled by `load_factor` (arrivals per completion): within 10% of the target the ready count
    stands. None without a profiling field."""
    mean = gpu_activity_mean(sample, fleet)
    if mean is None:
        return None
    ratio = mean * load_factor / scaling.gpu_utilization_target_percent
    ready = max(1, fleet.ready_replicas)
    if abs(ratio - 1) <= TOLERANCE:
        return ready
    return math.ceil(ratio * ready)


def load_demand(
    sample: MetricsSample,
    fleet: FleetState,
    scaling: ScalingSpec,
    batch_fraction: float = BATCH_TARGET_FRACTION,
    rates: tuple[float, float] | None = None,
) -> tuple[int, str]:
    """Replicas the current load needs when each fills `batch_fraction` of its batch, and why;
    `rates` is (arrivals, completions) per second when the completion counter was read."""
    waiting = sample.waiting or 0.0
    running = sample.running or 0.0
    per_replica = max(1.0, fleet.max_num_seqs * batch_fraction)
    load_factor = 1.0
    ready = max(fleet.ready_replicas, 1)
    if rates is not None:
        arrivals, completions = rates
        # Within the tolerance the two rates are the same minute's Poisson noise.
        if abs(arrivals / completions - 1) > TOLERANCE:
            load_factor = arrivals / completions
        needed = running * load_factor
        candidates = [
            (
                math.ceil(needed / per_replica),
                f"{arrivals:.1f} requests/s arriving, {completions:.1f}/s served: "
                f"{needed:.0f} in flight needed",
            )
        ]
    else:
        by_load = math.ceil((running + waiting) / per_replica)
        candidates = [(by_load, f"{running + waiting:.0f} requests in flight")]
    if rates is None and waiting > scaling.queue_depth_target * ready:
        # The queue outran capacity: every queued request beyond the target needs a new slot.
        backlog = waiting - scaling.queue_depth_target * ready
        candidates.append(
            (
                fleet.ready_replicas + math.ceil(backlog / per_replica),
                f"{waiting:.0f} waiting, above {scaling.queue_depth_target} per replica",
            )
        )
    if sample.kv_cache_usage is not None:
        candidates.append(
            (
                math.ceil(fleet.ready_replicas * sample.kv_cache_usage / KV_USAGE_TARGET),
                f"KV cache {sample.kv_cache_usage:.0%} used",
            )
        )
    by_gpu = gpu_demand(sample, fleet, scaling, load_factor)
    if by_gpu is not None:
        scaled = "" if load_factor == 1.0 else f" (x{load_factor:.2f} for the arrival rate)"
        candidates.append(
            (
                by_gpu,
                f"{sample.gpu_activity_field} {gpu_activity_mean(sample, fleet):.0f}%{scaled} "
                f"against the {scaling.gpu_utilization_target_percent}% target",
            )
        )
    return max(candidates, key=lambda candidate: candidate[0])  # ties name the first signal


def _hold(
    fleet: FleetState, scaling: ScalingSpec, reason: str, history: History, sample: MetricsSample
) -> Decision:
    return Decision(
        desired_replicas=fleet.spec_replicas,
        demand_replicas=fleet.spec_replicas,
        warm_replicas=scaling.warm_replicas,
        reason=reason,
        metrics=_metrics_used(sample, fleet),
        history=history,
        gpu_signal=gpu_signal(sample, scaling),
    )


def _held_requests_as_queue(sample: MetricsSample, fleet: FleetState) -> MetricsSample:
    """While the first replicas load, the requests the activator holds are the whole queue."""
    if (
        sample.problem
        and sample.held_requests is not None
        and fleet.ready_replicas == 0
        and fleet.spec_replicas > 0
    ):
        return replace(sample, waiting=sample.held_requests, running=0.0, problem="")
    return sample


def decide(
    sample: MetricsSample,
    fleet: FleetState,
    scaling: ScalingSpec,
    history: History,
    now: float,
) -> Decision:
    """Desired replicas for one VisionModel. Missing or stale metrics hold the current count."""
    if fleet.spec_replicas == 0 and (sample.problem or scaling.wake_on_request):
        # No pod runs, so none reports. Only the activator, when enabled, takes 0 -> 1.
        if not scaling.wake_on_request:
            return _hold(fleet, scaling, f"holding at 0: {AT_ZERO}", history, sample)
        held = sample.held_requests or 0.0
        waking = f"; it holds {held:.0f} requests" if held > 0 else ""
        return _hold(fleet, scaling, f"holding at 0: {AT_ZERO_WAKES}{waking}", history, sample)
    read = sample
    sample = _held_requests_as_queue(sample, fleet)
    held_as_queue = sample is not read
    if sample.problem:
        reason = f"holding at {fleet.spec_replicas}: {sample.problem}"
        return _hold(fleet, scaling, reason, history, sample)
    if sample.running is None or sample.waiting is None:
        reason = f"holding at {fleet.spec_replicas}: no queue metrics"
        return _hold(fleet, scaling, reason, history, sample)

    in_flight = sample.running + sample.waiting
    gpu_idle = (
        sample.gpu_utilization_percent is None
        or sample.gpu_utilization_percent < IDLE_GPU_UTILIZATION_PERCENT
    )
    through_activator = (sample.activator_requests_per_second or 0.0) > 0
    busy = in_flight > 0 or not gpu_idle or through_activator
    last_traffic = now if busy else history.last_traffic
    if last_traffic is None:
        last_traffic = now

    rates = arrival_rate(sample, history, now)
    activity_read = sample.gpu_activity_percent_sum
    sample = minute_of_gpu_activity(sample, history, now)
    demand, signal = load_demand(sample, fleet, scaling, rates=rates)
    if held_as_queue:
        signal += " (held by the activator)"
    relaxed_demand, _ = load_demand(sample, fleet, scaling, SCALE_DOWN_BATCH_FRACTION, rates)
    raw = _clamp(demand + scaling.warm_replicas, scaling)
    relaxed = _clamp(relaxed_demand + scaling.warm_replicas, scaling)
    idle_for = now - last_traffic
    if scaling.min_replicas == 0 and not busy and idle_for >= scaling.scale_to_zero_after_seconds:
        raw = relaxed = 0
        signal = f"no traffic for {idle_for:.0f}s"
    elif raw == 0:
        raw = relaxed = _clamp(1, scaling)

    kept_for = max(scaling.scale_down_delay_seconds, scaling.scale_up_delay_seconds)
    recommendations = tuple(item for item in history.recommendations if item[0] >= now - kept_for)
    recommendations += ((now, raw, relaxed),)
    recent_load = (
        *(item for item in history.recent_load if item[0] >= now - ARRIVAL_WINDOW_SECONDS),
        (now, in_flight, activity_read),
    )
    history = replace(
        history,
        recommendations=recommendations,
        last_traffic=last_traffic,
        recent_load=recent_load,
    )
    metrics = _metrics_used(sample, fleet)
    current = fleet.spec_replicas
    signal_of_gpu = gpu_signal(sample, scaling)

    def decision(desired: int, reason: str, next_history: History = history) -> Decision:
        return Decision(
            desired, demand, scaling.warm_replicas, reason, metrics, next_history, signal_of_gpu
        )

    if raw > current:
        if sample.reporting_pods < fleet.ready_replicas:
            signal += f" (metrics from {sample.reporting_pods}/{fleet.ready_replicas} pods)"
        up_window = now - scaling.scale_up_delay_seconds
        sustained = min(up for t, up, _ in recommendations if t >= up_window)
        evidence_since = min(t for t, _, _ in recommendations)
        if sustained <= current or evidence_since > up_window:
            return decision(current, f"{signal}: waiting {scaling.scale_up_delay_seconds}s")
        if raw - current <= TOLERANCE * current:
            return decision(current, f"{signal}: within {TOLERANCE:.0%} of {current}")
        step = max(MAX_SCALE_UP_STEP, current)
        desired = min(sustained, current + step)
        coming = fleet.existing_replicas - fleet.ready_replicas
        reason = f"{signal}: need {demand} + {scaling.warm_replicas} warm"
        if coming > 0:
            reason += f", {coming} still loading"
        return decision(desired, f"scale up to {desired}; {reason}")

    if relaxed < current:
        if sample.reporting_pods < fleet.ready_replicas:
            return decision(
                current,
                f"holding at {current}: metrics from only "
                f"{sample.reporting_pods}/{fleet.ready_replicas} ready pods",
            )
        if fleet.existing_replicas > fleet.ready_replicas:
            return decision(current, f"holding at {current}: replicas still loading")
        down_window = now - scaling.scale_down_delay_seconds
        stabilized = max(down for t, _, down in recommendations if t >= down_window)
        if stabilized >= current:
            return decision(
                current,
                f"{signal}: {relaxed} would do, keeping {current} for "
                f"{scaling.scale_down_delay_seconds}s of lower demand",
            )
        if (
            history.last_scale_down is not None
            and now - history.last_scale_down < scaling.scale_down_delay_seconds / 4
        ):
            return decision(current, f"{signal}: pausing between scale-downs")
        # Straight to the window's largest recommendation, as the HPA does: the window and the
        # 70% band already keep noise out, and a fleet stepping down one replica at a time
        # after a spike pays for idle GPUs for many minutes.
        desired = stabilized
        return decision(
            desired,
            f"scale down to {desired}; {signal}: need {relaxed_demand} + "
            f"{scaling.warm_replicas} warm",
            replace(history, last_scale_down=now),
        )
    return decision(
        current, f"steady at {current}; {signal}: need {demand} + {scaling.warm_replicas} warm"
    )


def no_metrics(problem: str) -> MetricsSample:
    """A sample that carries only why metrics could not be read."""
    return MetricsSample(None, None, None, None, 0, problem)


def merge_samples(samples: Sequence[MetricsSample]) -> MetricsSample:
    """Sum per-pod samples into one fleet sample (means for the ratio signals)."""
    usable = [sample for sample in samples if not sample.problem]
    if not usable:
        problems = "; ".join(sample.problem for sample in samples) or "no pods to read"
        return no_metrics(problems)

    def total(values: list[float | None]) -> float | None:
        present = [value for value in values if value is not None]
        return sum(present) if present else None

    def mean(values: list[float | None]) -> float | None:
        present = [value for value in values if value is not None]
        return sum(present) / len(present) if present else None

    return MetricsSample(
        waiting=total([s.waiting for s in usable]),
        running=total([s.running for s in usable]),
        kv_cache_usage=mean([s.kv_cache_usage for s in usable]),
        gpu_utilization_percent=mean([s.gpu_utilization_percent for s in usable]),
        reporting_pods=sum(s.reporting_pods for s in usable),
        # A pod read only once has no rate yet; a partial sum would understate the fleet's.
        completed_per_second=(
            None
            if any(s.completed_per_second is None for s in usable)
            else total([s.completed_per_second for s in usable])
        ),
    )
