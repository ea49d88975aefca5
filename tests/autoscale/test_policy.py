"""The autoscaling policy, decision by decision."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from vlm_operator.api.v1alpha1 import ScalingSpec
from vlm_operator.autoscale.policy import (
    FleetState,
    History,
    MetricsSample,
    arrival_rate,
    decide,
    merge_samples,
    no_metrics,
)

SCALING = ScalingSpec(
    min_replicas=1, max_replicas=10, warm_replicas=1, scale_down_delay_seconds=300
)
NOW = 10_000.0


def sample(waiting: float = 0, running: float = 0, **extra: Any) -> MetricsSample:
    values: dict[str, Any] = {
        "waiting": float(waiting),
        "running": float(running),
        "kv_cache_usage": 0.1,
        "gpu_utilization_percent": 90.0,
        "reporting_pods": 3,
    }
    values.update(extra)
    return MetricsSample(**values)


def fleet(replicas: int = 3, ready: int | None = None, existing: int | None = None) -> FleetState:
    ready = replicas if ready is None else ready
    return FleetState(replicas, ready, replicas if existing is None else existing, max_num_seqs=16)


def steady_history(replicas: int, since: float = NOW - 600) -> History:
    return History(recommendations=((since, replicas, replicas),), last_traffic=NOW - 1)


def test_holds_when_metrics_are_missing() -> None:
    decision = decide(no_metrics("Prometheus is unavailable"), fleet(), SCALING, History(), NOW)
    assert decision.desired_replicas == 3
    assert "holding at 3: Prometheus is unavailable" in decision.reason


def test_never_scales_down_on_partial_metrics() -> None:
    decision = decide(sample(running=2, reporting_pods=1), fleet(), SCALING, History(), NOW)
    assert decision.desired_replicas == 3
    assert "metrics from only 1/3" in decision.reason


def test_scales_up_at_once_to_demand_plus_warm() -> None:
    # 50 in flight / (16 x 0.8) per replica = 4 replicas, plus 1 warm.
    decision = decide(sample(running=40, waiting=10), fleet(3), SCALING, History(), NOW)
    assert decision.desired_replicas == 5
    assert decision.demand_replicas == 4
    assert decision.warm_replicas == 1
    assert decision.reason.startswith("scale up to 5")


def test_queue_backlog_adds_capacity_for_every_queued_request() -> None:
    decision = decide(sample(running=48, waiting=60), fleet(3), SCALING, History(), NOW)
    # 108 in flight need 9 replicas, plus 1 warm; one step adds at most 4 (or the current count).
    assert decision.demand_replicas == 9
    assert decision.desired_replicas == 7
    following = decide(
        sample(running=48, waiting=60), fleet(7), SCALING, decision.history, NOW + 15
    )
    assert following.desired_replicas == 10


def test_loading_pods_count_as_coming_capacity() -> None:
    # spec already 5, two still loading: the same demand asks for nothing more.
    busy = sample(running=40, waiting=10, reporting_pods=3)
    decision = decide(busy, fleet(5, ready=3, existing=5), SCALING, History(), NOW)
    assert decision.desired_replicas == 5


def test_scale_down_waits_for_the_window_then_goes_to_its_largest_recommendation() -> None:
    quiet = sample(running=2, reporting_pods=6)
    recent = History(recommendations=((NOW - 100, 6, 6),), last_traffic=NOW)
    held = decide(quiet, fleet(6), SCALING, recent, NOW)
    assert held.desired_replicas == 6
    assert "keeping 6" in held.reason
    # The window (300 s) saw 4 at NOW - 200 and now 2 (2 in flight: 1 replica + 1 warm).
    window = History(recommendations=((NOW - 400, 6, 6), (NOW - 200, 4, 4)), last_traffic=NOW)
    after = decide(quiet, fleet(6), SCALING, window, NOW)
    assert after.desired_replicas == 4
    # Had the fleet been at 5 still, the next step waits a quarter of the window.
    paused = decide(replace(quiet, reporting_pods=5), fleet(5), SCALING, after.history, NOW + 15)
    assert paused.desired_replicas == 5
    assert "pausing" in paused.reason


def test_hysteresis_band_keeps_a_noisy_load_steady() -> None:
    # 34 in flight: 3 replicas at 80% (34/12.8) but 4 at 70% (34/11.2); with 1 warm, 4 vs 5.
    steady = sample(running=34, reporting_pods=5)
    decision = decide(steady, fleet(5), SCALING, steady_history(5), NOW)
    assert decision.desired_replicas == 5
    assert decision.reason.startswith("steady at 5")


def test_no_scale_down_while_replicas_load() -> None:
    decision = decide(
        sample(running=1), fleet(4, ready=3, existing=4), SCALING, steady_history(4), NOW
    )
    assert decision.desired_replicas == 4
    assert "still loading" in decision.reason


def test_bounds_clamp_the_decision() -> None:
    flood = decide(sample(running=400, waiting=400), fleet(8), SCALING, History(), NOW)
    assert flood.desired_replicas == 10
    idle = decide(
        sample(reporting_pods=2, kv_cache_usage=0.0), fleet(2), SCALING, steady_history(2), NOW
    )
    assert idle.desired_replicas == 1


def test_scale_to_zero_only_with_min_zero_after_the_idle_window() -> None:
    to_zero = SCALING.model_copy(
        update={"min_replicas": 0, "warm_replicas": 0, "scale_to_zero_after_seconds": 600}
    )
    idle = sample(gpu_utilization_percent=0.0)
    long_idle = History(recommendations=((NOW - 700, 0, 0),), last_traffic=NOW - 700)
    assert decide(idle, fleet(2), to_zero, long_idle, NOW).desired_replicas == 0
    short_idle = History(recommendations=((NOW - 700, 1, 1),), last_traffic=NOW - 100)
    assert decide(idle, fleet(2), to_zero, short_idle, NOW).desired_replicas == 1
    kept = decide(idle, fleet(2), SCALING, long_idle, NOW)
    assert kept.desired_replicas >= 1


def test_gpu_utilization_alone_never_adds_replicas() -> None:
    hot_but_idle = sample(running=1, gpu_utilization_percent=100.0)
    decision = decide(hot_but_idle, fleet(2), SCALING, steady_history(2), NOW)
    assert decision.desired_replicas == 2


def test_kv_cache_pressure_adds_replicas() -> None:
    decision = decide(sample(running=10, kv_cache_usage=0.95), fleet(3), SCALING, History(), NOW)
    assert decision.desired_replicas == 5
    assert "KV cache" in decision.reason


def test_scale_up_delay_requires_sustained_demand() -> None:
    patient = SCALING.model_copy(update={"scale_up_delay_seconds": 60})
    burst = sample(running=40, waiting=10)
    first = decide(burst, fleet(3), patient, History(), NOW)
    assert first.desired_replicas == 3
    later = decide(burst, fleet(3), patient, first.history, NOW + 61)
    assert later.desired_replicas == 5


@pytest.mark.parametrize(("problems", "expected_pods"), [((), 2), (("pod b: refused",), 1)])
def test_merge_samples_adds_pods(problems: tuple[str, ...], expected_pods: int) -> None:
    pods = [sample(waiting=1, running=3, reporting_pods=1)]
    pods.append(
        no_metrics(problems[0]) if problems else sample(waiting=2, running=5, reporting_pods=1)
    )
    merged = merge_samples(pods)
    assert merged.reporting_pods == expected_pods
    assert merged.problem == ""


def test_merge_samples_without_any_pod_is_a_problem() -> None:
    merged = merge_samples([no_metrics("pod a: refused")])
    assert merged.problem == "pod a: refused"


def test_at_zero_the_policy_says_how_to_wake_the_model() -> None:
    to_zero = SCALING.model_copy(update={"min_replicas": 0})
    decision = decide(no_metrics("no ready pods to scrape"), fleet(0), to_zero, History(), NOW)
    assert decision.desired_replicas == 0
    assert decision.reason.startswith("holding at 0: scaled to zero")


WIDE = {"max_replicas": 20}
TO_ZERO = {"min_replicas": 0, "warm_replicas": 0, "scale_to_zero_after_seconds": 600}


@pytest.mark.parametrize(
    ("metrics", "replicas", "scaling", "history", "desired", "reason"),
    [
        # Missing, stale or partial data never scales.
        (no_metrics("stale (90s old)"), fleet(6), {}, steady_history(6), 6, "holding at 6"),
        (sample(running=1, reporting_pods=2), fleet(6), {}, steady_history(6), 6, "holding at 6"),
        (replace(sample(), waiting=None), fleet(6), {}, steady_history(6), 6, "holding at 6"),
        # Demand per signal, the largest wins, plus the warm replica.
        (sample(running=24), fleet(2), {}, History(), 3, "scale up to 3"),
        (sample(running=8, waiting=30), fleet(2), {}, History(), 5, "scale up to 5"),
        (sample(running=8, kv_cache_usage=0.99), fleet(2), {}, History(), 4, "scale up to 4"),
        # The tolerance band: 10 -> 11 is within 10%.
        (sample(running=128, reporting_pods=10), fleet(10), WIDE, History(), 10, "128 requests"),
        (sample(running=141, reporting_pods=10), fleet(10), WIDE, History(), 13, "scale up"),
        # Warm replicas ride on top of demand, and the bounds clamp.
        (sample(running=13), fleet(1), {"warm_replicas": 3}, History(), 5, "need 2 + 3 warm"),
        (sample(), fleet(3), {"warm_replicas": 0}, steady_history(3), 1, "scale down to 1"),
        # Scale to zero needs minReplicas 0, no request in flight and idle GPUs for the window.
        (
            sample(gpu_utilization_percent=0.0),
            fleet(1),
            TO_ZERO,
            History(recommendations=((NOW - 700, 0, 0),), last_traffic=NOW - 700),
            0,
            "scale down to 0",
        ),
        (
            sample(gpu_utilization_percent=60.0),
            fleet(1),
            TO_ZERO,
            History(recommendations=((NOW - 700, 1, 1),), last_traffic=NOW - 700),
            1,
            "steady at 1",
        ),
    ],
    ids=[
        "stale",
        "partial",
        "no-queue-metric",
        "in-flight",
        "backlog",
        "kv-cache",
        "within-tolerance",
        "beyond-tolerance",
        "warm-on-top",
        "down-to-demand",
        "to-zero",
        "busy-gpu-blocks-zero",
    ],
)
def test_decision_table(
    metrics: MetricsSample,
    replicas: FleetState,
    scaling: dict[str, Any],
    history: History,
    desired: int,
    reason: str,
) -> None:
    decision = decide(metrics, replicas, SCALING.model_copy(update=scaling), history, NOW)
    assert decision.desired_replicas == desired, decision.reason
    assert reason in decision.reason
    again = decide(metrics, replicas, SCALING.model_copy(update=scaling), history, NOW)
    assert again == decision, "the policy is a pure function"


def sm_active(mean_percent: float, ready: int, **extra: Any) -> MetricsSample:
    """A sample whose ready replicas' GPUs show `mean_percent` SM activity on average."""
    return sample(
        gpu_activity_percent_sum=mean_percent * ready,
        gpu_activity_field="DCGM_FI_PROF_SM_ACTIVE",
        reporting_pods=ready,
        **extra,
    )


def test_sm_activity_above_target_adds_replicas_the_queue_does_not_see() -> None:
    # Prefill-heavy: 10 in flight fill 1 replica's batch to 80%, but the 3 GPUs work at 100%
    # against an 80% target: 3 x 100 / 80 = 3.75 -> 4 replicas, plus 1 warm.
    decision = decide(sm_active(100, 3, running=10), fleet(3), SCALING, History(), NOW)
    assert decision.demand_replicas == 4
    assert decision.desired_replicas == 5
    assert "DCGM_FI_PROF_SM_ACTIVE 100% against the 80% target" in decision.reason
    assert decision.metrics["gpuActivityPercent"] == 100
    assert decision.gpu_signal == "DCGM_FI_PROF_SM_ACTIVE: sized on against the 80% target"


def test_the_target_percent_sets_the_gpu_demand() -> None:
    # 4 ready at 60%: a 40% target asks for 4 x 60 / 40 = 6 replicas, an 80% target for 3.
    low_target = SCALING.model_copy(update={"gpu_utilization_target_percent": 40})
    assert decide(sm_active(60, 4), fleet(4), low_target, History(), NOW).demand_replicas == 6
    assert decide(sm_active(60, 4), fleet(4), SCALING, History(), NOW).demand_replicas == 3


def test_no_scale_down_while_sm_activity_is_at_the_target() -> None:
    # 4 in flight would need 1 replica, yet 3 GPUs at 85% of an 80% target (within the 10%
    # tolerance) hold all 3.
    cold = SCALING.model_copy(update={"warm_replicas": 0})
    busy_gpus = decide(sm_active(85, 3, running=4), fleet(3), cold, steady_history(3), NOW)
    assert busy_gpus.desired_replicas == 3
    assert busy_gpus.reason.startswith("steady at 3; DCGM_FI_PROF_SM_ACTIVE 85%")
    # The same queue with GPUs at 20% steps down.
    idle_gpus = decide(sm_active(20, 3, running=4), fleet(3), cold, steady_history(3), NOW)
    assert idle_gpus.desired_replicas == 1


def test_loading_replicas_gpus_do_not_dilute_the_activity() -> None:
    # Sum 200% over 2 ready replicas (the loading one reads 0): the ready ones run at 100%.
    loading = fleet(3, ready=2, existing=3)
    busy = sample(gpu_activity_percent_sum=200.0, gpu_activity_field="DCGM_FI_PROF_SM_ACTIVE")
    decision = decide(busy, loading, SCALING, History(), NOW)
    assert decision.metrics["gpuActivityPercent"] == 100
    assert decision.demand_replicas == 3  # 2 x 100 / 80 = 2.5


def test_multi_gpu_replicas_average_over_their_gpus() -> None:
    wide = FleetState(2, 2, 2, max_num_seqs=16, gpus_per_replica=2)
    busy = sample(
        gpu_activity_percent_sum=360.0, gpu_activity_field="DCGM_FI_PROF_GR_ENGINE_ACTIVE"
    )
    decision = decide(busy, wide, SCALING, History(), NOW)
    assert decision.metrics["gpuActivityPercent"] == 90  # 360 over 4 GPUs
    assert "DCGM_FI_PROF_GR_ENGINE_ACTIVE 90%" in decision.reason


def test_gpu_util_fallback_is_reported_and_never_blocks_a_scale_down() -> None:
    decision = decide(
        sample(running=1, gpu_utilization_percent=100.0), fleet(3), SCALING, steady_history(3), NOW
    )
    assert decision.desired_replicas == 2
    assert decision.gpu_signal.startswith("DCGM_FI_DEV_GPU_UTIL only (no DCGM profiling fields)")
    without_dcgm = decide(
        sample(gpu_utilization_percent=None), fleet(3), SCALING, steady_history(3), NOW
    )
    assert without_dcgm.gpu_signal.startswith("no DCGM metrics")


WAKES = {"min_replicas": 0, "warm_replicas": 0, "wake_on_request": True}


def test_at_zero_with_the_activator_the_policy_leaves_the_wake_to_it() -> None:
    waking = SCALING.model_copy(update=WAKES)
    held = replace(no_metrics("no series"), held_requests=3.0)
    decision = decide(held, fleet(0), waking, History(), NOW)
    assert decision.desired_replicas == 0
    assert decision.reason == (
        "holding at 0: scaled to zero; the activator raises it to 1 on the next request; "
        "it holds 3 requests"
    )


def test_requests_held_while_the_first_replica_loads_size_the_fleet() -> None:
    # The activator woke the model (0 -> 1) and holds 30 requests; the replica still loads and
    # reports nothing: 30 / 12.8 -> 3 replicas.
    waking = SCALING.model_copy(update=WAKES)
    held = replace(no_metrics("no series"), held_requests=30.0)
    decision = decide(held, fleet(1, ready=0, existing=1), waking, History(), NOW)
    assert decision.desired_replicas == 3
    assert decision.reason.startswith(
        "scale up to 3; 30 requests in flight (held by the activator)"
    )
    assert decision.metrics["heldRequests"] == 30


def test_requests_through_the_activator_keep_the_model_from_zero() -> None:
    waking = SCALING.model_copy(update={**WAKES, "scale_to_zero_after_seconds": 600})
    long_idle = History(recommendations=((NOW - 700, 0, 0),), last_traffic=NOW - 700)
    quiet = sample(gpu_utilization_percent=0.0, reporting_pods=1)
    assert decide(quiet, fleet(1), waking, long_idle, NOW).desired_replicas == 0
    arriving = replace(quiet, activator_requests_per_second=0.2)
    assert decide(arriving, fleet(1), waking, long_idle, NOW).desired_replicas == 1


# --- The arrival rate: completions (rate of vllm:request_success_total) plus in-flight growth.


def test_the_arrival_rate_adds_the_growth_of_the_queue_to_what_finished() -> None:
    # 4 finished per second while the in-flight count grew from 48 to 288 over the minute:
    # (288 - 48) / 60 = 4 more per second arrived than finished, so 8 arrive per second.
    seen = History(recent_load=((NOW - 60, 48.0, None),))
    burst = sample(running=48, waiting=240, completed_per_second=4.0)
    assert arrival_rate(burst, seen, NOW) == (8.0, 4.0)
    # The first decision has no minute behind it: arrivals are taken as what finished.
    assert arrival_rate(burst, History(), NOW) == (4.0, 4.0)
    # Without the counter, or before anything finished, there is no rate.
    assert arrival_rate(sample(running=48, waiting=240), seen, NOW) is None
    assert arrival_rate(replace(burst, completed_per_second=0.0), seen, NOW) is None


def test_a_saturated_fleet_grows_to_the_arrival_rate_not_to_its_backlog() -> None:
    # 3 replicas of 16 run 48 (full), serve 4/s, receive 8/s (as above). Little's law: 48 run at
    # 4/s served, so 8/s need 48 x 8 / 4 = 96 in flight = 96 / (16 x 0.8) = 7.5 -> 8 replicas,
    # plus 1 warm; one step adds at most max(4, 3) = 4, so 7 now.
    seen = History(recent_load=((NOW - 60, 48.0, None),), last_traffic=NOW)
    burst = sample(running=48, waiting=240, completed_per_second=4.0)
    decision = decide(burst, fleet(3), SCALING, seen, NOW)
    assert (decision.demand_replicas, decision.desired_replicas) == (8, 7)
    assert "8.0 requests/s arriving, 4.0/s served: 96 in flight needed" in decision.reason
    # Counting the backlog instead (no counter): 288 in flight / 12.8 = 22.5 -> 23 replicas.
    counted = decide(replace(burst, completed_per_second=None), fleet(3), SCALING, seen, NOW)
    assert counted.demand_replicas == 23


def test_a_backlog_draining_after_a_burst_is_not_demand_for_new_replicas() -> None:
    # 10 replicas; the in-flight count fell from 400 to 160 over the minute while 6/s finished:
    # 6 + (160 - 400) / 60 = 2 arrive per second. 60 run at 6/s, so 2/s need 60 x 2 / 6 = 20 in
    # flight: 20 / 11.2 (70% of 16, the scale-down band) = 1.8 -> 2, plus 1 warm = 3.
    seen = History(
        recommendations=((NOW - 400, 10, 10),),
        recent_load=((NOW - 60, 400.0, None),),
        last_traffic=NOW,
    )
    draining = sample(running=60, waiting=100, completed_per_second=6.0, reporting_pods=10)
    decision = decide(draining, fleet(10), SCALING, seen, NOW)
    assert decision.desired_replicas == 3
    assert decision.reason.startswith("scale down to 3")
    # Counting the backlog instead: 100 waiting > 4 x 10, so 10 + ceil(60 / 12.8) = 15.
    counted = decide(replace(draining, completed_per_second=None), fleet(10), SCALING, seen, NOW)
    assert counted.demand_replicas == 15


def test_arrivals_within_ten_percent_of_completions_are_noise() -> None:
    # 8 finished per second, in flight grew from 28 to 64: 8 + 36 / 60 = 8.6 arrive, 7.5% more
    # than finished, within the 10% tolerance: the 64 running stand, 64 / 12.8 = 5 replicas.
    seen = History(recent_load=((NOW - 60, 28.0, None),), last_traffic=NOW)
    steady_load = sample(running=64, completed_per_second=8.0, reporting_pods=5)
    decision = decide(steady_load, fleet(5), SCALING, seen, NOW)
    assert decision.demand_replicas == 5
    assert "8.6 requests/s arriving, 8.0/s served: 64 in flight needed" in decision.reason


def test_gpu_activity_is_sized_on_the_minute_not_one_interval() -> None:
    # 3 GPUs summed 100% over the minute's three earlier decisions and 300% now: the minute's
    # mean is (100 + 100 + 100 + 300) / 4 = 150, 50% each against 80%: ceil(3 x 0.625) = 2.
    # Sized on the one interval: 100% each, ceil(3 x 1.25) = 4.
    seen = History(
        recent_load=tuple((NOW - age, 10.0, 100.0) for age in (45, 30, 15)), last_traffic=NOW
    )
    spike = sm_active(100, 3, running=10, kv_cache_usage=0.0)
    assert decide(spike, fleet(3), SCALING, seen, NOW).demand_replicas == 2
    assert decide(spike, fleet(3), SCALING, History(), NOW).demand_replicas == 4


def test_merged_completions_need_every_pod() -> None:
    first = sample(running=1, completed_per_second=2.0, reporting_pods=1)
    second = sample(running=1, completed_per_second=3.0, reporting_pods=1)
    assert merge_samples([first, second]).completed_per_second == 5.0
    # A pod read for the first time has no rate yet; half a sum would understate the fleet.
    fresh = replace(second, completed_per_second=None)
    assert merge_samples([first, fresh]).completed_per_second is None
