"""What the API server said when it refused a request, in a form status and logs can use."""

from __future__ import annotations

import json
from dataclasses import dataclass

from kubernetes.client.exceptions import ApiException

MESSAGE_LIMIT = 900
"""Longest API server message kept in a condition (conditions are read by people)."""


@dataclass(frozen=True)
class Refusal:
    """One refused request: HTTP code, the Status reason (CamelCase, e.g. Invalid, Forbidden,
    InternalError, Conflict) and the API server's own message."""

    code: int
    reason: str
    message: str

    @property
    def retryable_soon(self) -> bool:
        """Whether the same request may succeed without anyone changing anything: a conflict,
        throttling, or a server-side error."""
        return self.code in (409, 429) or self.code >= 500


class RefusedError(Exception):
    """The API server answered a write with an error Status."""

    def __init__(self, refused: Refusal) -> None:
        super().__init__(f"{refused.code} {refused.reason}: {refused.message}")
        self.refusal = refused


def refusal(error: ApiException) -> Refusal:
    """The Status object of a refused request; a body that is not a Status keeps the HTTP
    reason phrase."""
    code = int(error.status or 0)
    reason = str(error.reason or "Unknown").title().replace(" ", "")
    message = str(error.body or error.reason or "").strip()
    try:
        status = json.loads(error.body or "")
    except (TypeError, ValueError):
        status = None
    if isinstance(status, dict) and status.get("kind") == "Status":
        reason = str(status.get("reason") or reason)
        message = str(status.get("message") or message)
    return Refusal(code, reason, message[:MESSAGE_LIMIT])


def cause_of(error: Exception) -> str:
    """One line that is the same for every request failing the same way, for logging once."""
    if isinstance(error, RefusedError):
        return f"API server answered {error.refusal.code} {error.refusal.reason}"
    if isinstance(error, ApiException) and error.status:
        refused = refusal(error)
        return f"API server answered {refused.code} {refused.reason}"
    if is_outage(error):
        return f"API server unreachable: {describe_unreachable(error)}"
    return f"{type(error).__name__}: {error}"


def is_outage(error: Exception) -> bool:
    """Whether an error is what an unreachable or refusing API server produces (logged by its
    cause alone), rather than a defect (logged with its details)."""
    return isinstance(error, ApiException | RefusedError | OSError) or type(
        error
    ).__module__.startswith("urllib3")


def describe_unreachable(error: Exception) -> str:
    """A one-line cause for a request that never got an answer (refused, reset, timed out),
    the same for every request failing the same way, so it is logged once."""
    cause: BaseException = error
    while cause.__cause__ is not None or cause.__context__ is not None:
        cause = cause.__cause__ or cause.__context__  # type: ignore[assignment]
    return type(cause).__name__
