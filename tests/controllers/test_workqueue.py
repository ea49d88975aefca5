"""The work queue: deduplication, one holder per key, delays and backoff per key."""

from __future__ import annotations

import threading
import time

from vlm_operator.controllers.workqueue import WorkQueue


def test_a_key_added_twice_is_handed_out_once() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add("a")
    queue.add("a")
    queue.add("b")
    assert queue.get() == "a"
    assert queue.get() == "b"
    assert len(queue) == 0


def test_a_held_key_waits_for_its_worker() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add("a")
    assert queue.get() == "a"
    queue.add("a")  # an event while a worker holds it
    got: list[str | None] = []
    thread = threading.Thread(target=lambda: got.append(queue.get()))
    thread.start()
    thread.join(0.3)
    assert got == []  # not handed to a second worker
    queue.done("a")
    thread.join(2)
    assert got == ["a"]


def test_backoff_doubles_per_key_and_resets() -> None:
    queue: WorkQueue[str] = WorkQueue(base_delay=1.0, max_delay=4.0)
    assert [queue.retry("a") for _ in range(4)] == [1.0, 2.0, 4.0, 4.0]
    assert queue.retry("b") == 1.0
    queue.forget("a")
    assert queue.retry("a") == 1.0


def test_a_delayed_key_comes_when_due_and_an_event_comes_at_once() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add("late", delay=0.3)
    queue.add("now")
    assert queue.get() == "now"
    started = time.monotonic()
    assert queue.get() == "late"
    assert time.monotonic() - started >= 0.25
    queue.add("x", delay=60)
    queue.add("x")  # a watch event overrides the backoff
    assert queue.get() == "x"


def test_shut_down_wakes_waiting_workers() -> None:
    queue: WorkQueue[str] = WorkQueue()
    got: list[str | None] = ["unset"]
    thread = threading.Thread(target=lambda: got.__setitem__(0, queue.get()))
    thread.start()
    queue.shut_down()
    thread.join(2)
    assert got == [None]
