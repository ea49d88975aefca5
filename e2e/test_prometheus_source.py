"""The autoscaler's Prometheus source and policy against a real Prometheus, without a cluster.

Debian's Prometheus scrapes simulator processes on 127.0.0.1 that stand in for the two pods of
VisionModel qwen-vl and for one pod of another model in the same namespace. The source must read
the fleet's queue depth and GPU utilization through its PromQL (and only this fleet's), the
policy must scale up on them, and when the pods or Prometheus go away the policy must hold.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from prometheus_harness import LoadRun, Prometheus, SimulatedPod
from vlm_operator.api.v1alpha1 import ScalingSpec
from vlm_operator.autoscale.policy import FleetState, History, MetricsSample, decide
from vlm_operator.autoscale.signals import Fleet
from vlm_operator.autoscale.sources import PrometheusSource

pytestmark = pytest.mark.e2e

FLEET = Fleet("team-a", "qwen-vl")
PODS = ("qwen-vl-5d9f7c6b4-abcde", "qwen-vl-5d9f7c6b4-fghij")
OTHER_MODEL_POD = "qwen-vl-large-7c4b2d9f8-klmno"
MAX_NUM_SEQS = 2
SCALING = ScalingSpec(min_replicas=1, max_replicas=8, warm_replicas=1)
TIMEOUT = 30.0


def all_ready(replicas: int) -> FleetState:
    """A fleet of `replicas` pods, every one ready."""
    return FleetState(replicas, replicas, replicas, MAX_NUM_SEQS)


def wait_for_sample(
    source: PrometheusSource,
    what: str,
    accept: Callable[[MetricsSample], bool],
    timeout: float = TIMEOUT,
) -> MetricsSample:
    """Read the fleet every half second until `accept(sample)` holds."""
    deadline = time.monotonic() + timeout
    while True:
        sample = source.read(FLEET, time.time())
        if accept(sample):
            return sample
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}; last sample: {sample}")
        time.sleep(0.5)


@pytest.fixture
def simulated_fleet(tmp_path: Path) -> Iterator[list[SimulatedPod]]:
    """qwen-vl's two pods (two sequences at a time, 20 tokens/s each), then the other model's."""
    pods = [
        SimulatedPod(
            pod, FLEET.namespace, tmp_path, max_num_seqs=MAX_NUM_SEQS, decode_tokens_per_second=20
        )
        for pod in (*PODS, OTHER_MODEL_POD)
    ]
    try:
        for pod in pods:
            pod.start()
        yield pods
    finally:
        for pod in pods:
            pod.stop()


def test_source_reads_queue_and_gpu_utilization_and_the_policy_holds_without_data(
    simulated_fleet: list[SimulatedPod], tmp_path: Path
) -> None:
    with Prometheus(tmp_path / "prometheus") as prometheus:
        prometheus.set_targets([target for pod in simulated_fleet for target in pod.targets()])
        source = PrometheusSource(prometheus.url)
        idle = wait_for_sample(
            source,
            "both qwen-vl pods in Prometheus",
            lambda s: s.problem == "" and s.reporting_pods == len(PODS),
        )
        assert (idle.waiting, idle.running) == (0.0, 0.0)

        # 10 requests of 3 s per pod, all at once: 2 run and up to 8 wait on each. The other
        # model's pod queues too, and must not be counted.
        loads: list[LoadRun] = [
            pod.start_load(rate_per_second=50, duration_seconds=0.2, max_tokens=60)
            for pod in simulated_fleet
        ]
        loaded = wait_for_sample(
            source,
            "queue depth and GPU utilization under load",
            lambda s: (s.waiting or 0) >= 8 and (s.gpu_utilization_percent or 0) > 50,
        )
        assert loaded.problem == ""
        assert loaded.running == len(PODS) * MAX_NUM_SEQS
        assert loaded.waiting is not None
        assert loaded.waiting <= len(PODS) * (10 - MAX_NUM_SEQS)
        assert loaded.reporting_pods == len(PODS)

        scale_up = decide(loaded, all_ready(2), SCALING, History(), time.time())
        assert scale_up.reason.startswith("scale up"), scale_up.reason
        assert scale_up.desired_replicas > 2
        assert scale_up.metrics["waiting"] == loaded.waiting
        for load in loads:
            result = load.wait(60)
            assert (result.succeeded, result.failed, result.dropped) == (10, 0, 0), result

        # Finished requests show in rate(vllm:request_success_total[1m]), which the arrival
        # rate is built on; before any finished, the counter had no series to rate.
        assert idle.completed_per_second is None
        served = wait_for_sample(
            source, "a completion rate", lambda s: (s.completed_per_second or 0) > 0
        )
        assert served.problem == ""

        # The pods go away: Prometheus marks their series stale, and the policy holds.
        for pod in simulated_fleet:
            pod.stop()
        gone = wait_for_sample(source, "the series to go stale", lambda s: s.problem != "")
        assert "no vllm:num_requests_running series" in gone.problem
        held = decide(gone, all_ready(5), SCALING, History(), time.time())
        assert held.desired_replicas == 5
        assert held.reason.startswith("holding at 5"), held.reason

    # Prometheus itself is gone: the policy holds too.
    unreachable = source.read(FLEET, time.time())
    assert f"Prometheus at {prometheus.url} is unavailable" in unreachable.problem
    held = decide(unreachable, all_ready(5), SCALING, History(), time.time())
    assert held.desired_replicas == 5
    assert held.reason.startswith("holding at 5"), held.reason


EXPORTER_POD = {"namespace": "gpu-operator", "pod": "nvidia-dcgm-exporter-x7k2q"}


@pytest.mark.parametrize("honor_labels", [True, False], ids=["honor-labels", "exported-labels"])
def test_sm_activity_tracks_the_batch_and_sizes_against_the_target(
    tmp_path: Path, honor_labels: bool
) -> None:
    """Half a batch of decoding reads about 50% SM activity (GPU_UTIL reads busy), whether the
    DCGM series keep `pod`/`namespace` (honorLabels) or arrive as `exported_pod`/
    `exported_namespace`; against a 35% target the SM term wins the decision."""
    pod = SimulatedPod(PODS[0], FLEET.namespace, tmp_path, max_num_seqs=8)
    no_profiling = SimulatedPod(PODS[1], FLEET.namespace, tmp_path, dcgm_profiling=False)
    with Prometheus(tmp_path / "prometheus", honor_labels=honor_labels) as prometheus:
        pod.start()
        try:
            exporter = None if honor_labels else EXPORTER_POD
            prometheus.set_targets(pod.targets(exporter))
            exported = "pod" if honor_labels else "exported_pod"
            prometheus.wait_for_series(f'DCGM_FI_PROF_SM_ACTIVE{{{exported}="{pod.pod}"}}', 30)
            source = PrometheusSource(prometheus.url)
            # 4 of 8 sequences decoding for 15 s (300 tokens at 20/s).
            load = pod.start_load(rate_per_second=100, duration_seconds=0.04, max_tokens=300)
            busy = wait_for_sample(
                source,
                "half a batch of SM activity",
                lambda s: s.running == 4 and 40 <= (s.gpu_activity_percent_sum or 0) <= 60,
            )
            assert busy.gpu_activity_field == "DCGM_FI_PROF_SM_ACTIVE"
            # GPU_UTIL reads busy while SM activity reads half; on a loaded machine the
            # simulator's busy share of wall time drops a little below its idle-machine 90%+.
            assert (busy.gpu_utilization_percent or 0) >= 70
            # Worked by hand: 40-60% against a 35% target is 1.14-1.71 times the target, past
            # the policy's 10% tolerance (a 40% target would stand still at 40-44%), so one
            # ready replica becomes ceil(1.14..1.71) = 2.
            target_35 = ScalingSpec(
                min_replicas=1, max_replicas=4, warm_replicas=0, gpu_utilization_target_percent=35
            )
            batch_of_8 = FleetState(1, 1, 1, max_num_seqs=8)
            decision = decide(busy, batch_of_8, target_35, History(), time.time())
            assert decision.desired_replicas == 2, decision.reason
            assert "DCGM_FI_PROF_SM_ACTIVE" in decision.reason
            assert decision.gpu_signal.startswith("DCGM_FI_PROF_SM_ACTIVE")
            assert load.wait(60).succeeded == 4
        finally:
            pod.stop()

        # An exporter without profiling fields: the fallback is GPU_UTIL, and status says so.
        no_profiling.start()
        try:
            prometheus.set_targets(no_profiling.targets(None if honor_labels else EXPORTER_POD))
            fallback = wait_for_sample(
                source,
                "the pod without profiling fields, once the first pod's series went stale",
                lambda s: (
                    s.problem == ""
                    and s.gpu_utilization_percent is not None
                    and s.gpu_activity_field == ""
                ),
            )
            decision = decide(fallback, all_ready(1), SCALING, History(), time.time())
            assert decision.gpu_signal.startswith("DCGM_FI_DEV_GPU_UTIL only")
        finally:
            no_profiling.stop()
