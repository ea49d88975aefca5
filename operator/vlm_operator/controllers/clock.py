"""The wall clock, in the form status timestamps take."""

from __future__ import annotations

from datetime import UTC, datetime


def utc_now() -> str:
    """The current time as an RFC 3339 timestamp with second precision."""
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
