"""The fleet benchmark's service model and verdict, on hand-worked numbers."""

from __future__ import annotations

import pytest

from bench_autoscale import (
    FleetModel,
    Replica,
    Request,
    dominates,
    pareto_front,
    verdict,
)

MODEL = FleetModel(
    max_num_seqs=16,
    gpus_per_replica=1,
    cold_start_seconds=212.0,
    kv_cache_tokens=100_000,
    tokens_per_image=2118,
)


def request(prefill_seconds: float = 0.01, output: int = 60, kv: int = 1000) -> Request:
    return Request(arrival=0.0, prefill_seconds=prefill_seconds, output_tokens=output, kv_tokens=kv)


def test_decode_slows_as_the_batch_fills_and_throughput_grows_sublinearly() -> None:
    assert MODEL.decode_step(1) == pytest.approx(1 / 60)
    assert MODEL.decode_step(16) == pytest.approx(2 / 60)
    # 16 sequences produce 8 times, not 16 times, the tokens per second of one.
    assert (16 / MODEL.decode_step(16)) / (1 / MODEL.decode_step(1)) == pytest.approx(8)


def test_prefill_competes_with_decode_in_every_step() -> None:
    replica = Replica(0.0, MODEL)
    for index in range(4):
        replica.decoding.append((100.0 + index, index, request()))
    replica.prefilling.append([0.5, request(prefill_seconds=0.5)])
    decode, prefill, activity = replica.rates()
    # A decode step over 4: (1 + 3/15)/60 = 0.02 s; the chunk: 2044 tokens at 20,000/s.
    step = 0.02 + 2044 / 20_000
    assert decode == pytest.approx(1 / step)
    assert prefill == pytest.approx((2044 / 20_000) / step)
    # SM activity: the chunk in full, the decode step at 4 of 16 tokens of a full batch's rate.
    assert activity == pytest.approx((2044 / 20_000 + 4 * (2 / 60) / 16) / step)
    replica.prefilling.clear()
    decode_only, _, alone = replica.rates()
    assert decode_only == pytest.approx(50.0)  # 1 / 0.02 s
    assert alone == pytest.approx(4 * (2 / 60) / 16 / 0.02)


def test_admission_stops_at_the_batch_or_the_kv_cache() -> None:
    replica = Replica(0.0, MODEL)
    replica.waiting.extend(request(kv=30_000) for _ in range(5))
    replica.admit()
    assert (replica.running, len(replica.waiting)) == (3, 2)  # 4 x 30,000 > 100,000
    small = Replica(0.0, MODEL)
    small.waiting.extend(request(kv=10) for _ in range(20))
    small.admit()
    assert (small.running, len(small.waiting)) == (16, 4)


def test_the_next_event_is_the_head_prefill_or_the_first_decode_to_finish() -> None:
    replica = Replica(0.0, MODEL)
    replica.waiting.append(request(prefill_seconds=0.01))
    replica.admit()
    # Alone, the prefill runs at the full rate: done in 0.01 s.
    assert replica.next_event() == pytest.approx(0.01)
    replica.advance(0.01)
    assert replica.prefilling[0][0] == pytest.approx(0.0)
    assert replica.busy_seconds == pytest.approx(0.01)


def figures(gpu_hours: float, p95: float) -> dict[str, object]:
    return {"family": "x", "gpu_hours": gpu_hours, "p95_wait_s": p95}


@pytest.mark.parametrize(
    ("theirs", "dominated"),
    [
        (figures(9.95, 1.02), False),  # within 1% and 0.1 s: a tie
        (figures(9.5, 1.0), True),  # cheaper, as fast
        (figures(10.0, 0.5), True),  # as cheap, faster
        (figures(9.5, 2.0), False),  # cheaper but slower: a trade-off
    ],
)
def test_domination_needs_no_worse_on_both_and_clearly_better_on_one(
    theirs: dict[str, object], dominated: bool
) -> None:
    assert dominates(theirs, figures(10.0, 1.0)) is dominated


def test_the_verdict_reports_ties_and_the_front() -> None:
    policies = {
        "vlm-operator": figures(10.0, 1.0),
        "keda-in-flight:target=8": figures(9.95, 1.02),
        "static:replicas=12": figures(12.0, 0.9),
        "hpa-gpu-util:target=50": figures(20.0, 0.95),
    }
    line, lost = verdict("steady", policies)
    assert not lost
    assert line == "steady: on the front; ties keda-in-flight:target=8"
    assert pareto_front(policies) == [
        "keda-in-flight:target=8", "vlm-operator", "static:replicas=12"
    ]  # fmt: skip
