"""kopf peering priorities: one per process, the longest-running process highest.

kopf pauses an operator that sees a peer of higher priority, and pauses every operator that sees
a peer of the same priority, so distinct priorities are what lets exactly one act."""

from __future__ import annotations

from vlm_operator.handlers.runtime import PRIORITY_TIEBREAK_BITS, peering_priority

START = 1_796_169_600_000_000_000
"""2026-12-01T00:00:00Z in nanoseconds."""
INT64_MIN = -(2**63)


def test_an_earlier_start_outranks_a_later_one_whatever_the_tiebreak() -> None:
    highest_tiebreak = 2**PRIORITY_TIEBREAK_BITS - 1
    assert peering_priority(START, highest_tiebreak) > peering_priority(START + 1_000_000, 0)


def test_the_same_millisecond_is_told_apart_by_the_tiebreak() -> None:
    assert peering_priority(START, 1) != peering_priority(START + 999_999, 2)


def test_priorities_fit_a_kubernetes_integer_for_centuries() -> None:
    year_2300 = START + 274 * 365 * 24 * 3600 * 10**9
    assert peering_priority(year_2300, 2**PRIORITY_TIEBREAK_BITS - 1) > INT64_MIN
