"""Fleet simulation: the operator's autoscaling policy against swept KEDA, HPA and static baselines.

Every configuration serves the same request traces on a simulated fleet of vLLM replicas whose
batch, KV cache, tokens per image and cold start come from the planner's plan for Qwen2.5-VL-7B on
an H100. Reported per trace and configuration: GPU-hours, p95/p99 wait (time to first token),
SLO-violation minutes and scale actions; then the Pareto front of GPU-hours against p95 wait and
where the policy stands on it.

    python benchmarks/bench_autoscale.py     # benchmarks/results/autoscale.json, docs/*.png
    python benchmarks/bench_autoscale.py --seed 11 \
        --results benchmarks/results/autoscale-seed11.json   # a second seed, figures only

The service model, per replica (assumed, not measured; see docs/autoscaling.md):
- a decode step over D sequences takes DECODE_STEP_SECONDS x (1 + (FULL_BATCH_STEP_FACTOR - 1) x
  (D - 1) / (M - 1)): per-sequence decode slows as the batch fills, throughput grows sublinearly;
- chunked prefill: while any admitted request still prefills, each step also processes up to
  PREFILL_CHUNK_TOKENS - D prompt tokens at PREFILL_TOKENS_PER_SECOND (images add their vision
  encoder time), so prefill and image encoding stretch every running sequence's decode step;
- every replica has its own waiting queue (vLLM's), fed by a uniformly random choice among the
  Ready endpoints, as a ClusterIP Service routes connections;
- a new replica costs its GPU from creation, joins the endpoints only once Ready, after the
  operator's expected start time for the plan; a removed one leaves the endpoints and drains.
GPU metrics per replica over each decision interval: DCGM_FI_DEV_GPU_UTIL is the share of time
anything ran; DCGM_FI_PROF_SM_ACTIVE the share of the GPU's work capacity used (prefill counts in
full, a decode step in proportion to its tokens against a full batch's rate).
"""

from __future__ import annotations

import argparse
import functools
import heapq
import json
import math
import random
from collections import deque
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vlm_operator.api.config import OperatorConfig
from vlm_operator.api.v1alpha1 import ScalingSpec, VisionModelSpec
from vlm_operator.autoscale.policy import (
    ARRIVAL_WINDOW_SECONDS,
    FleetState,
    History,
    MetricsSample,
    decide,
)
from vlm_operator.catalog.gpus import GpuOffer
from vlm_operator.render.workload import RenderInput, expected_startup_seconds
from vlm_operator.sizing import plan_visionmodel

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "autoscale.json"
PLOTS = ROOT / "docs"
DOC = ROOT / "docs" / "autoscaling.md"
TABLE_START = "<!-- benchmark table: start -->"
TABLE_END = "<!-- benchmark table: end -->"

DECISION_INTERVAL = 15.0
SLO_P95_WAIT_SECONDS = 5.0
MIN_REPLICAS, MAX_REPLICAS = 1, 24
SCALE_DOWN_DELAY_SECONDS = 300
DECODE_STEP_SECONDS = 1 / 60
"""One sequence decodes 60 tokens/s alone."""
FULL_BATCH_STEP_FACTOR = 2.0
"""A full batch's decode step takes twice as long: 30 tokens/s per sequence."""
PREFILL_TOKENS_PER_SECOND = 20_000.0
PREFILL_CHUNK_TOKENS = 2048
ENCODE_SECONDS_PER_IMAGE = 0.05
TEXT_PROMPT_TOKENS = 200
METRIC_NOISE_PERCENT = 3.0

SCALING = ScalingSpec(
    min_replicas=MIN_REPLICAS, max_replicas=MAX_REPLICAS, warm_replicas=1,
    queue_depth_target=4, scale_down_delay_seconds=SCALE_DOWN_DELAY_SECONDS,
    gpu_utilization_target_percent=80,
)  # fmt: skip


@dataclass(frozen=True)
class FleetModel:
    """What one replica is, from the plan."""

    max_num_seqs: int
    gpus_per_replica: int
    cold_start_seconds: float
    kv_cache_tokens: int
    tokens_per_image: int

    def decode_step(self, batch: int) -> float:
        """Wall time of one decode step over `batch` sequences."""
        growth = (batch - 1) / max(1, self.max_num_seqs - 1)
        return DECODE_STEP_SECONDS * (1 + (FULL_BATCH_STEP_FACTOR - 1) * growth)


def fleet_model() -> FleetModel:
    """Plan Qwen2.5-VL-7B for four 1280x1280 images on an H100 and derive one replica."""
    spec = VisionModelSpec.model_validate(
        {
            "workload": {"maxImagesPerRequest": 4, "concurrency": 16},
            "hardware": {"maxGpusPerReplica": 1},
            # A fleet that scales keeps its weights on a volume; a new replica only loads them.
            "model": {"id": "Qwen/Qwen2.5-VL-7B-Instruct", "cache": {"persistentVolumeClaim": "w"}},
        }
    )
    offer = GpuOffer("NVIDIA-H100-80GB-HBM3", 81559, (9, 0), 8)
    plan = plan_visionmodel(spec, gpu_offers=[offer])
    assert plan.feasible, plan.reason
    cold_start = expected_startup_seconds(
        RenderInput("bench", "bench", "bench", spec, plan, OperatorConfig())
    )
    return FleetModel(
        max_num_seqs=plan.max_num_seqs,
        gpus_per_replica=plan.gpus_per_replica,
        cold_start_seconds=cold_start,
        kv_cache_tokens=plan.kv_cache_tokens,
        tokens_per_image=plan.tokens_per_image,
    )


# --- Traces: a rate function (requests/s at time t), its peak, its length and its request mix.


@dataclass(frozen=True)
class Trace:
    """A request trace: arrival rate over time and what each request asks for."""

    rate: Callable[[float], float]
    peak_rate: float
    duration: float
    images: tuple[tuple[int, float], ...]
    """(images per request, probability)."""
    mean_output_tokens: float


MIXED_IMAGES = ((1, 0.6), (2, 0.3), (4, 0.1))


def steady(t: float) -> float:
    """8 requests/s drifting +-20% over tens of minutes."""
    return 8.0 * (1 + 0.12 * math.sin(2 * math.pi * t / 1800) + 0.08 * math.sin(t / 420 + 1.3))


def diurnal(t: float) -> float:
    """A day compressed into two hours: 1.5 requests/s at night, 16 at the peak."""
    return 1.5 + 14.5 * (1 - math.cos(2 * math.pi * t / 7200)) / 2


def bursty(t: float) -> float:
    """6 requests/s, +50% for 8 minutes every 30, and +150% for 4 minutes once an hour."""
    minute = t / 60
    if 50 <= minute % 60 < 54:
        return 15.0
    if 20 <= minute % 30 < 28:
        return 9.0
    return 6.0


def flash_crowd(t: float) -> float:
    """1.5 requests/s, rising tenfold within one minute at minute 20, for 20 minutes."""
    minute = t / 60
    if minute < 20 or minute >= 41:
        return 1.5
    if minute < 21:
        return 1.5 + 13.5 * (minute - 20)
    return 15.0


def image_heavy(t: float) -> float:
    """4 requests/s of four-image requests with short answers: prefill dominates."""
    return 4.0 * (1 + 0.15 * math.sin(2 * math.pi * t / 1500))


TRACES: dict[str, Trace] = {
    "steady": Trace(steady, 9.6, 3600, MIXED_IMAGES, 200),
    "diurnal": Trace(diurnal, 16.0, 7200, MIXED_IMAGES, 200),
    "bursty": Trace(bursty, 15.0, 3600, MIXED_IMAGES, 200),
    "flash-crowd": Trace(flash_crowd, 15.0, 3600, MIXED_IMAGES, 200),
    "image-heavy": Trace(image_heavy, 4.6, 3600, ((4, 1.0),), 48),
}


# --- The replica: continuous batching with chunked prefill, solved between events.


@dataclass
class Request:
    """One chat completion."""

    arrival: float
    prefill_seconds: float
    """GPU time of its prefill at the full prefill rate, vision encoding included."""
    output_tokens: int
    kv_tokens: int


@dataclass
class Replica:
    """One vLLM replica: its queue, its batch and its GPU counters."""

    ready_at: float
    model: FleetModel
    draining: bool = False
    waiting: deque[Request] = field(default_factory=deque)
    prefilling: deque[list[Any]] = field(default_factory=deque)
    """[remaining prefill seconds, request], first come first served."""
    decoding: list[tuple[float, int, Request]] = field(default_factory=list)
    """Heap of (virtual token count at which it finishes, tie-breaker, request)."""
    virtual_tokens: float = 0.0
    """Tokens every decoding sequence has produced since the replica started."""
    kv_reserved: int = 0
    finished: deque[float] = field(default_factory=deque)
    """When its requests finished over the last minute (vllm:request_success_total)."""
    updated: float = 0.0
    busy_seconds: float = 0.0
    work_seconds: float = 0.0
    version: int = 0

    @property
    def running(self) -> int:
        """vllm:num_requests_running: prefilling or decoding."""
        return len(self.prefilling) + len(self.decoding)

    def rates(self) -> tuple[float, float, float]:
        """(decode tokens/s per sequence, prefill seconds done per second, SM activity 0-1)."""
        batch = len(self.decoding)
        decode = self.model.decode_step(batch) if batch else 0.0
        chunk = (PREFILL_CHUNK_TOKENS - batch) / PREFILL_TOKENS_PER_SECOND if self.prefilling else 0
        step = decode + chunk
        if step == 0:
            return 0.0, 0.0, 0.0
        full = self.model.decode_step(self.model.max_num_seqs)
        activity = (chunk + batch * full / self.model.max_num_seqs) / step
        return (1 / step if batch else 0.0), chunk / step, activity

    def advance(self, now: float) -> None:
        """Let the batch run from the last update to `now` at constant rates."""
        elapsed = now - self.updated
        if elapsed <= 0:
            return
        decode, prefill, activity = self.rates()
        self.virtual_tokens += elapsed * decode
        if self.prefilling:
            self.prefilling[0][0] -= elapsed * prefill
            self.busy_seconds += elapsed
        elif self.decoding:
            self.busy_seconds += elapsed
        self.work_seconds += elapsed * activity
        self.updated = now

    def admit(self) -> None:
        """vLLM's scheduler: first come first served while batch slots and KV cache allow."""
        while self.waiting and self.running < self.model.max_num_seqs:
            head = self.waiting[0]
            if self.kv_reserved + head.kv_tokens > self.model.kv_cache_tokens:
                return
            self.waiting.popleft()
            self.kv_reserved += head.kv_tokens
            self.prefilling.append([head.prefill_seconds, head])

    def next_event(self) -> float | None:
        """Seconds until a prefill or a request finishes at the current rates."""
        decode, prefill, _ = self.rates()
        candidates = []
        if self.prefilling:
            candidates.append(max(0.0, self.prefilling[0][0]) / prefill)
        if self.decoding:
            candidates.append(max(0.0, self.decoding[0][0] - self.virtual_tokens) / decode)
        return min(candidates) if candidates else None


# --- Autoscalers: each maps (sample, fleet, now) to desired replicas.

Autoscaler = Callable[[MetricsSample, FleetState, float], int]


def operator_policy(initial: int) -> Autoscaler:
    """The operator's own policy, with its history carried between decisions; it starts as the
    operator does, with the current count as the first recommendation."""
    history = History(recommendations=((0.0, initial, initial),))

    def policy(sample: MetricsSample, fleet: FleetState, now: float) -> int:
        nonlocal history
        decision = decide(sample, fleet, SCALING, history, now)
        history = decision.history
        return decision.desired_replicas

    return policy


def hpa(
    recommend: Callable[[MetricsSample, FleetState], tuple[float, int]], initial: int
) -> Autoscaler:
    """The HPA's controller around a metric: `recommend` gives (usage ratio, desired). Within a
    10% tolerance nothing changes; up by at most max(100%, 4 pods) per 15 s; down to the highest
    recommendation of the same 300 s window the policy uses; bounds as the policy's. The window
    starts with the initial count, as for a fleet that has run at that size for a while."""
    window: deque[tuple[float, int]] = deque([(0.0, initial)])

    def policy(sample: MetricsSample, fleet: FleetState, now: float) -> int:
        current = fleet.spec_replicas
        ratio, desired = recommend(sample, fleet)
        if abs(ratio - 1) <= 0.1:
            desired = current
        desired = max(MIN_REPLICAS, min(MAX_REPLICAS, desired))
        window.append((now, desired))
        while window[0][0] < now - SCALE_DOWN_DELAY_SECONDS:
            window.popleft()
        if desired > current:
            return min(desired, current + max(current, 4))
        return min(current, max(value for _, value in window))

    return policy


def keda_waiting(threshold: int, initial: int) -> Autoscaler:
    """KEDA's Prometheus scaler on sum(vllm:num_requests_waiting), AverageValue threshold."""

    def recommend(sample: MetricsSample, fleet: FleetState) -> tuple[float, int]:
        waiting = sample.waiting or 0.0
        return waiting / (threshold * fleet.spec_replicas), math.ceil(waiting / threshold)

    return hpa(recommend, initial)


def keda_in_flight(target: int, initial: int) -> Autoscaler:
    """KEDA on running + waiting with an AverageValue target per replica."""

    def recommend(sample: MetricsSample, fleet: FleetState) -> tuple[float, int]:
        in_flight = (sample.waiting or 0.0) + (sample.running or 0.0)
        return in_flight / (target * fleet.spec_replicas), math.ceil(in_flight / target)

    return hpa(recommend, initial)


def hpa_gpu(target: int, initial: int, activity: bool) -> Autoscaler:
    """An HPA on a per-pod GPU metric (GPU_UTIL or SM activity) of the ready pods; pods still
    loading count as 0 when scaling up, as the HPA treats unready pods."""

    def recommend(sample: MetricsSample, fleet: FleetState) -> tuple[float, int]:
        ready = max(1, fleet.ready_replicas)
        if activity:
            total = sample.gpu_activity_percent_sum or 0.0
        else:
            total = (sample.gpu_utilization_percent or 0.0) * ready
        return total / (target * ready), math.ceil(total / target)

    return hpa(recommend, initial)


@dataclass(frozen=True)
class Config:
    """One autoscaler configuration of the sweep."""

    name: str
    family: str
    make: Callable[[int], Autoscaler] | None
    """Builds the autoscaler from the initial replica count; None: a static fleet of
    `static_replicas`."""
    static_replicas: int = 0


def configurations(trace: Trace, model: FleetModel) -> list[Config]:
    """The policy and every baseline configuration, each family sweeping its own knob."""
    configs = [Config("vlm-operator", "vlm-operator", operator_policy)]
    sweeps: list[tuple[str, str, tuple[int, ...], Callable[..., Autoscaler]]] = [
        ("keda-waiting", "threshold", (1, 2, 5, 10), keda_waiting),
        ("keda-in-flight", "target", (4, 8, 12, 16), keda_in_flight),
        ("hpa-gpu-util", "target", (50, 70, 90), functools.partial(hpa_gpu, activity=False)),
        (
            "hpa-sm-active",
            "target",
            (50, 60, 70, 80, 90),
            functools.partial(hpa_gpu, activity=True),
        ),
    ]
    for family, knob, values, make in sweeps:
        configs += [
            Config(f"{family}:{knob}={value}", family, functools.partial(make, value))
            for value in values
        ]
    peak = static_estimate(trace, model)
    for replicas in (peak - 1, peak, peak + 1):
        configs.append(Config(f"static:replicas={replicas}", "static", None, replicas))
    return configs


def gpu_seconds_per_request(trace: Trace, model: FleetModel) -> float:
    """GPU time of a mean request when the batch runs at 80%."""
    batch = 0.8 * model.max_num_seqs
    per_token = model.decode_step(round(batch)) / batch
    mean_images = sum(images * share for images, share in trace.images)
    prefill = (
        TEXT_PROMPT_TOKENS + mean_images * model.tokens_per_image
    ) / PREFILL_TOKENS_PER_SECOND + mean_images * ENCODE_SECONDS_PER_IMAGE
    return prefill + trace.mean_output_tokens * per_token


def static_estimate(trace: Trace, model: FleetModel) -> int:
    """Replicas for the trace's peak if each ran its GPU at capacity."""
    return min(MAX_REPLICAS, math.ceil(trace.peak_rate * gpu_seconds_per_request(trace, model)))


def initial_replicas(trace: Trace, model: FleetModel) -> int:
    """Where every autoscaler starts: the opening rate at 70% of each GPU, as a fleet that has
    served it for a while would be."""
    need = trace.rate(0) * gpu_seconds_per_request(trace, model) / 0.7
    return max(MIN_REPLICAS, min(MAX_REPLICAS, math.ceil(need)))


# --- The simulation.


@dataclass
class Outcome:
    """What happened to the fleet over a trace."""

    waits: list[tuple[float, float]] = field(default_factory=list)
    """(arrival time, time to first token) per request."""
    replica_seconds: float = 0.0
    scale_actions: int = 0
    timeline: list[tuple[float, int, int]] = field(default_factory=list)
    """(time, replicas existing, replicas ready) at every decision."""


def simulate(trace: Trace, model: FleetModel, config: Config, seed: int) -> Outcome:
    """Serve one trace with one autoscaler configuration."""
    arrivals = random.Random(seed)
    routing = random.Random(seed + 1)
    noise = random.Random(seed + 2)
    start = config.static_replicas if config.make is None else initial_replicas(trace, model)
    autoscaler = config.make(start) if config.make is not None else None
    replicas = [Replica(0.0, model) for _ in range(start)]
    unrouted: deque[Request] = deque()
    events: list[tuple[float, int, str, Any]] = []
    counter = 0
    outcome = Outcome()
    images, weights = zip(*trace.images, strict=True)

    def push(time: float, kind: str, payload: Any = None) -> None:
        nonlocal counter
        counter += 1
        heapq.heappush(events, (time, counter, kind, payload))

    def schedule(replica: Replica, now: float) -> None:
        replica.version += 1
        delay = replica.next_event()
        if delay is not None:
            push(now + delay, "replica", (replica, replica.version))

    def settle(replica: Replica, now: float) -> None:
        """Finish what is due at `now`, admit from the queue, and schedule the next event."""
        if replica.prefilling and replica.prefilling[0][0] <= 1e-9:
            _, request = replica.prefilling.popleft()
            outcome.waits.append((request.arrival, now - request.arrival))
            finish = replica.virtual_tokens + request.output_tokens
            heapq.heappush(replica.decoding, (finish, id(request), request))
        while replica.decoding and replica.decoding[0][0] <= replica.virtual_tokens + 1e-9:
            _, _, request = heapq.heappop(replica.decoding)
            replica.kv_reserved -= request.kv_tokens
            replica.finished.append(now)
        replica.admit()
        if replica.draining and not replica.running and not replica.waiting:
            replicas.remove(replica)
            return
        schedule(replica, now)

    def endpoints(now: float) -> list[Replica]:
        return [r for r in replicas if not r.draining and r.ready_at <= now]

    def route(request: Request, now: float) -> None:
        ready = endpoints(now)
        if not ready:
            unrouted.append(request)
            return
        replica = ready[routing.randrange(len(ready))]
        replica.advance(now)
        replica.waiting.append(request)
        settle(replica, now)

    def next_arrival(after: float) -> float:
        # Thinning of a non-homogeneous Poisson process bounded by the peak rate.
        time = after
        while True:
            time += arrivals.expovariate(trace.peak_rate)
            if time >= trace.duration or arrivals.random() * trace.peak_rate <= trace.rate(time):
                return time

    def decide_now(now: float) -> None:
        serving = [r for r in replicas if not r.draining]
        ready = [r for r in serving if r.ready_at <= now]
        outcome.timeline.append((now, len(replicas), len(ready)))
        for replica in serving:
            replica.advance(now)

        def jitter(value: float) -> float:
            return max(0.0, min(100.0, value + noise.gauss(0, METRIC_NOISE_PERCENT)))

        utilization = [jitter(100 * r.busy_seconds / DECISION_INTERVAL) for r in ready]
        activity = sum(jitter(100 * r.work_seconds / DECISION_INTERVAL) for r in serving)
        for replica in replicas:
            replica.busy_seconds = replica.work_seconds = 0.0
        if autoscaler is None:
            return
        kv = sum(r.kv_reserved for r in ready) / (model.kv_cache_tokens * max(1, len(ready)))
        for replica in replicas:
            while replica.finished and replica.finished[0] < now - ARRIVAL_WINDOW_SECONDS:
                replica.finished.popleft()
        # rate(vllm:request_success_total[1m]) summed over the ready pods.
        window = min(now, ARRIVAL_WINDOW_SECONDS)
        completed = sum(len(r.finished) for r in ready) / window
        sample = MetricsSample(
            waiting=float(sum(len(r.waiting) for r in ready)),
            running=float(sum(r.running for r in ready)),
            kv_cache_usage=kv,
            gpu_utilization_percent=sum(utilization) / len(utilization) if ready else 0.0,
            reporting_pods=len(ready),
            gpu_activity_percent_sum=activity,
            gpu_activity_field="DCGM_FI_PROF_SM_ACTIVE",
            completed_per_second=completed,
        )
        fleet = FleetState(len(serving), len(ready), len(serving), model.max_num_seqs)
        desired = autoscaler(sample, fleet, now)
        if desired > len(serving):
            for _ in range(desired - len(serving)):
                replica = Replica(now + model.cold_start_seconds, model, updated=now)
                replicas.append(replica)
                push(replica.ready_at, "ready", replica)
            outcome.scale_actions += 1
        elif desired < len(serving):
            # The Deployment removes loading pods first, then ready ones; those drain.
            victims = sorted(serving, key=lambda r: (r.ready_at <= now, r.running))
            for victim in victims[: len(serving) - desired]:
                victim.draining = True
                if victim.ready_at > now:
                    replicas.remove(victim)
                else:
                    settle(victim, now)
            outcome.scale_actions += 1

    push(next_arrival(0.0), "arrival")
    push(DECISION_INTERVAL, "decide")
    previous = 0.0
    while events:
        now, _, kind, payload = heapq.heappop(events)
        if now >= trace.duration:
            break
        # Every replica that exists costs its GPUs: loading, serving or draining.
        outcome.replica_seconds += len(replicas) * (now - previous)
        previous = now
        if kind == "arrival":
            count = arrivals.choices(images, weights)[0]
            output = min(
                4 * int(trace.mean_output_tokens),
                1 + int(arrivals.expovariate(1 / trace.mean_output_tokens)),
            )
            prompt = TEXT_PROMPT_TOKENS + count * model.tokens_per_image
            prefill = prompt / PREFILL_TOKENS_PER_SECOND + count * ENCODE_SECONDS_PER_IMAGE
            route(Request(now, prefill, output, prompt + output), now)
            push(next_arrival(now), "arrival")
        elif kind == "replica":
            replica, version = payload
            if version == replica.version and replica in replicas:
                replica.advance(now)
                settle(replica, now)
        elif kind == "ready":
            if payload in replicas:
                payload.updated = now
                while unrouted:
                    route(unrouted.popleft(), now)
        elif kind == "decide":
            decide_now(now)
            push(now + DECISION_INTERVAL, "decide")
    outcome.replica_seconds += len(replicas) * (trace.duration - previous)
    return outcome


# --- Figures, the front and the verdict.


def percentile(values: list[float], fraction: float) -> float:
    """The nearest-rank percentile of a non-empty list."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered)) - 1))]


def slo_violation_minutes(waits: list[tuple[float, float]]) -> int:
    """Minutes whose p95 time to first token exceeded the SLO."""
    minutes: dict[int, list[float]] = {}
    for arrival, wait in waits:
        minutes.setdefault(int(arrival // 60), []).append(wait)
    return sum(1 for values in minutes.values() if percentile(values, 0.95) > SLO_P95_WAIT_SECONDS)


def summarize(config: Config, outcome: Outcome, model: FleetModel) -> dict[str, Any]:
    """The reported figures of one run."""
    waits = [wait for _, wait in outcome.waits]
    return {
        "family": config.family,
        "gpu_hours": round(outcome.replica_seconds * model.gpus_per_replica / 3600, 2),
        "p50_wait_s": round(percentile(waits, 0.50), 2),
        "p95_wait_s": round(percentile(waits, 0.95), 2),
        "p99_wait_s": round(percentile(waits, 0.99), 2),
        "slo_violation_minutes": slo_violation_minutes(outcome.waits),
        "scale_actions": outcome.scale_actions,
        "requests": len(waits),
    }


def not_worse(ours: float, theirs: float, slack: float) -> bool:
    """`theirs` is no worse than `ours` beyond the slack."""
    return theirs <= ours + slack


def clearly_better(ours: float, theirs: float, slack: float) -> bool:
    """`theirs` is better than `ours` by more than the slack."""
    return theirs < ours - slack


def slacks(figures: dict[str, Any]) -> tuple[float, float]:
    """What counts as equal: 1% of GPU-hours, and 0.1 s or 5% of p95 wait."""
    return 0.01 * figures["gpu_hours"], max(0.1, 0.05 * figures["p95_wait_s"])


def dominates(theirs: dict[str, Any], ours: dict[str, Any]) -> bool:
    """No worse on GPU-hours and p95 wait, and clearly better on one of them."""
    gpu_slack, wait_slack = slacks(ours)
    return (
        not_worse(ours["gpu_hours"], theirs["gpu_hours"], gpu_slack)
        and not_worse(ours["p95_wait_s"], theirs["p95_wait_s"], wait_slack)
        and (
            clearly_better(ours["gpu_hours"], theirs["gpu_hours"], gpu_slack)
            or clearly_better(ours["p95_wait_s"], theirs["p95_wait_s"], wait_slack)
        )
    )


def pareto_front(policies: dict[str, dict[str, Any]]) -> list[str]:
    """Configurations that no other configuration strictly dominates, cheapest first."""
    front = [
        name
        for name, figures in policies.items()
        if not any(
            other["gpu_hours"] <= figures["gpu_hours"]
            and other["p95_wait_s"] <= figures["p95_wait_s"]
            and (other["gpu_hours"], other["p95_wait_s"])
            != (figures["gpu_hours"], figures["p95_wait_s"])
            for other in policies.values()
        )
    ]
    return sorted(front, key=lambda name: policies[name]["gpu_hours"])


def ties(policies: dict[str, dict[str, Any]]) -> list[str]:
    """Baseline configurations equal to the policy within the slacks on both axes."""
    ours = policies["vlm-operator"]
    gpu_slack, wait_slack = slacks(ours)
    return [
        name
        for name, theirs in policies.items()
        if name != "vlm-operator"
        and abs(theirs["gpu_hours"] - ours["gpu_hours"]) <= gpu_slack
        and abs(theirs["p95_wait_s"] - ours["p95_wait_s"]) <= wait_slack
    ]


def verdict(trace: str, policies: dict[str, dict[str, Any]]) -> tuple[str, bool]:
    """A line saying where the policy stands, and whether it is dominated."""
    ours = policies["vlm-operator"]
    dominating = [n for n, f in policies.items() if n != "vlm-operator" and dominates(f, ours)]
    if dominating:
        return f"{trace}: DOMINATED by {', '.join(dominating)}", True
    tied = ties(policies)
    where = "on the front" if "vlm-operator" in pareto_front(policies) else "not dominated"
    tail = f"; ties {', '.join(tied)}" if tied else ""
    return f"{trace}: {where}{tail}", False


def best_baselines(policies: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Per family, the cheapest configuration that meets the SLO (else the lowest p95)."""
    best: dict[str, str] = {}
    for name, figures in policies.items():
        family = figures["family"]
        if family == "vlm-operator":
            continue

        def key(n: str) -> tuple[bool, float, float]:
            f = policies[n]
            return (f["p95_wait_s"] > SLO_P95_WAIT_SECONDS, f["gpu_hours"], f["p95_wait_s"])

        if family not in best or key(name) < key(best[family]):
            best[family] = name
    return best


def plot(trace: str, policies: dict[str, dict[str, Any]], path: Path) -> None:
    """GPU-hours against p95 wait, one marker per configuration, the front as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.5), dpi=110)
    families = sorted({f["family"] for f in policies.values()})
    markers = dict(zip(families, "o^sDvP*X", strict=False))
    for family in families:
        members = {n: f for n, f in policies.items() if f["family"] == family}
        axes.scatter(
            [f["gpu_hours"] for f in members.values()],
            [max(0.05, f["p95_wait_s"]) for f in members.values()],
            marker=markers[family],
            s=110 if family == "vlm-operator" else 45,
            label=family,
            zorder=3 if family == "vlm-operator" else 2,
        )
    front = pareto_front(policies)
    axes.plot(
        [policies[n]["gpu_hours"] for n in front],
        [max(0.05, policies[n]["p95_wait_s"]) for n in front],
        color="grey", linestyle="--", linewidth=1, label="Pareto front",
    )  # fmt: skip
    axes.axhline(SLO_P95_WAIT_SECONDS, color="red", linewidth=0.8, label="SLO (p95 5 s)")
    axes.set_yscale("log")
    axes.set_xlabel("GPU-hours")
    axes.set_ylabel("p95 time to first token (s, log)")
    axes.set_title(f"{trace}: every configuration of the sweep")
    axes.legend(fontsize=7, loc="upper right")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def markdown_summary(results: dict[str, Any]) -> str:
    """Per trace: the policy and the best configuration of every baseline family."""
    lines = [
        "| trace | configuration | GPU-hours | p95 wait (s) | p99 wait (s) "
        "| SLO-violation minutes | scale actions |",
        "|---|---|---|---|---|---|---|",
    ]
    for trace, entry in results.items():
        policies = entry["policies"]
        names = ["vlm-operator", *sorted(best_baselines(policies).values())]
        for name in names:
            f = policies[name]
            shown = f"**{name}**" if name == "vlm-operator" else name
            lines.append(
                f"| {trace} | {shown} | {f['gpu_hours']} | {f['p95_wait_s']} | "
                f"{f['p99_wait_s']} | {f['slo_violation_minutes']} | {f['scale_actions']} |"
            )
    lines.append("")
    lines += [f"- {entry['verdict']}" for entry in results.values()]
    return "\n".join(lines)


def write_summary(results: dict[str, Any]) -> None:
    """Replace the table between its markers in docs/autoscaling.md."""
    text = DOC.read_text(encoding="utf-8")
    start, end = text.index(TABLE_START), text.index(TABLE_END)
    table = markdown_summary(results)
    DOC.write_text(f"{text[: start + len(TABLE_START)]}\n{table}\n{text[end:]}", encoding="utf-8")


def run_one(job: tuple[str, int, int]) -> tuple[str, str, dict[str, Any]]:
    """One (trace, configuration) run, for the process pool."""
    trace_name, index, seed = job
    model = fleet_model()
    trace = TRACES[trace_name]
    config = configurations(trace, model)[index]
    return trace_name, config.name, summarize(config, simulate(trace, model, config, seed), model)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--traces", nargs="*", default=list(TRACES))
    parser.add_argument(
        "--results", type=Path, default=RESULTS,
        help="where the figures go; only the default also redraws the plots and the doc table",
    )  # fmt: skip
    args = parser.parse_args()
    publish = args.results == RESULTS
    model = fleet_model()
    jobs = [
        (name, index, args.seed)
        for name in args.traces
        for index in range(len(configurations(TRACES[name], model)))
    ]
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        runs = list(pool.map(run_one, jobs))
    results: dict[str, Any] = {}
    for trace_name, name, figures in runs:
        entry = results.setdefault(
            trace_name, {"slo_p95_wait_s": SLO_P95_WAIT_SECONDS, "policies": {}}
        )
        entry["policies"][name] = figures
    print(
        f"Fleet: Qwen2.5-VL-7B, {model.gpus_per_replica} GPU per replica, batch "
        f"{model.max_num_seqs}, {model.tokens_per_image} tokens per image, cold start "
        f"{model.cold_start_seconds:.0f} s; SLO p95 time to first token {SLO_P95_WAIT_SECONDS} s"
    )
    dominated = []
    for trace_name, entry in results.items():
        policies = entry["policies"]
        print(f"\n{trace_name} ({TRACES[trace_name].duration / 3600:.1f} h)")
        print(
            f"  {'configuration':28} {'GPU-h':>7} {'p95 s':>7} {'p99 s':>7} "
            f"{'SLO min':>7} {'acts':>5}"
        )
        for name, f in sorted(policies.items(), key=lambda item: item[1]["gpu_hours"]):
            print(
                f"  {name:28} {f['gpu_hours']:7.2f} {f['p95_wait_s']:7.2f} {f['p99_wait_s']:7.2f} "
                f"{f['slo_violation_minutes']:7d} {f['scale_actions']:5d}"
            )
        entry["pareto_front"] = pareto_front(policies)
        entry["best_per_family"] = best_baselines(policies)
        line, lost = verdict(trace_name, policies)
        entry["verdict"] = line
        print(f"  Pareto front: {', '.join(entry['pareto_front'])}")
        print(f"  verdict: {line}")
        if lost:
            dominated.append(trace_name)
        if publish:
            plot(trace_name, policies, PLOTS / f"autoscale-{trace_name}.png")
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    if publish and TABLE_START in DOC.read_text(encoding="utf-8"):
        write_summary(results)
    if dominated:
        raise SystemExit(f"the policy is dominated on: {', '.join(dominated)}")


if __name__ == "__main__":
    main()
