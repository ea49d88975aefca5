"""Events worth telling a user, and the sink both control loops post them through."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Event:
    """An event to post on the VisionModel."""

    type: str
    reason: str
    message: str


EventSink = Callable[[Mapping[str, Any], Event], None]
"""Posts one event on the VisionModel whose body is given."""
