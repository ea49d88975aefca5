"""A work queue of VisionModel keys: deduplicated, one worker per key at a time, delayed adds,
and exponential backoff per key for retries."""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)

BASE_RETRY_SECONDS = 1.0
MAX_RETRY_SECONDS = 300.0


class WorkQueue(Generic[K]):
    """Keys waiting to be processed. A key added while it is waiting keeps its earliest due
    time; a key added while a worker holds it is handed out again once that worker is done."""

    def __init__(
        self, base_delay: float = BASE_RETRY_SECONDS, max_delay: float = MAX_RETRY_SECONDS
    ) -> None:
        self._base_delay = base_delay
        self._max_delay = max_delay
        self._ready = threading.Condition()
        self._heap: list[tuple[float, int, K]] = []
        self._order = itertools.count()
        self._due: dict[K, float] = {}
        self._held: set[K] = set()
        self._failures: dict[K, int] = {}
        self._closed = False

    def add(self, key: K, delay: float = 0.0) -> None:
        """Schedule a key `delay` seconds from now, unless it is already due sooner."""
        due = time.monotonic() + delay
        with self._ready:
            if self._closed or self._due.get(key, float("inf")) <= due:
                return
            self._due[key] = due
            heapq.heappush(self._heap, (due, next(self._order), key))
            self._ready.notify()

    def retry(self, key: K) -> float:
        """Schedule a failed key after its backoff (1 s, doubling, capped); returns the delay."""
        with self._ready:
            failures = self._failures.get(key, 0) + 1
            self._failures[key] = failures
        delay: float = min(self._base_delay * 2.0 ** (failures - 1), self._max_delay)
        self.add(key, delay)
        return delay

    def forget(self, key: K) -> None:
        """Reset a key's backoff after it succeeded."""
        with self._ready:
            self._failures.pop(key, None)

    def get(self) -> K | None:
        """The next due key not held by another worker, waiting as long as needed; None once
        the queue is shut down."""
        with self._ready:
            while not self._closed:
                now = time.monotonic()
                skipped: list[tuple[float, int, K]] = []
                found: K | None = None
                while self._heap and self._heap[0][0] <= now:
                    entry = heapq.heappop(self._heap)
                    due, _, key = entry
                    if self._due.get(key) != due:
                        continue  # superseded by an earlier add
                    if key in self._held:
                        skipped.append(entry)
                        continue
                    del self._due[key]
                    self._held.add(key)
                    found = key
                    break
                for entry in skipped:
                    heapq.heappush(self._heap, entry)
                if found is not None:
                    return found
                waiting = [entry for entry in self._heap if entry[2] not in self._held]
                timeout = min(entry[0] for entry in waiting) - now if waiting else None
                self._ready.wait(timeout)
            return None

    def done(self, key: K) -> None:
        """A worker finished a key; a pending add of it becomes available."""
        with self._ready:
            self._held.discard(key)
            self._ready.notify_all()

    def shut_down(self) -> None:
        """Stop handing out keys; waiting workers get None."""
        with self._ready:
            self._closed = True
            self._ready.notify_all()

    def __len__(self) -> int:
        with self._ready:
            return len(self._due)
