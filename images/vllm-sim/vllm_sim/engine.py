"""The simulated engine: continuous batching in real time, with vLLM's admission rules.

One engine step decodes one token for every running sequence and prefills the requests admitted
in that step. A step costs, in wall time:

- host time: the images of newly admitted requests are decoded and resized on the CPU, on the
  engine's critical path, while the GPU waits;
- GPU time: the prefill of the admitted prompts at `prefill_tokens_per_second`, plus one decode
  step of 1/`decode_tokens_per_second` for a batch of one, growing linearly to
  `full_batch_step_factor` times that for a full batch (decode is memory-bound: the step time
  grows slowly with the batch, so a replica's throughput grows sublinearly up to `max_num_seqs`).

A request is admitted, in arrival order, while fewer than `max_num_seqs` run and its prompt plus
its whole output fit in the KV cache left by the running requests; otherwise it waits, as in
vLLM's scheduler (which admits on the prompt and preempts later; reserving the output up front
keeps the simulator free of preemption). GPU busy time is what a DCGM
exporter reports as utilization: the share of wall time in which a kernel ran. GPU work time is
what DCGM's SM-activity field tracks: prefill keeps every SM busy, and a decode step counts in
proportion to the tokens it produced against a full batch's rate, so a replica decoding one
sequence of sixteen reads far below one decoding a full batch.
"""

from __future__ import annotations

import itertools
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

CHARS_PER_TEXT_TOKEN = 4
"""Text is counted as one token per four characters, the usual rule of thumb for English."""


@dataclass(frozen=True)
class EngineConfig:
    """The service-rate model of one replica."""

    max_num_seqs: int = 16
    prefill_tokens_per_second: float = 6000.0
    decode_tokens_per_second: float = 35.0
    """Tokens per second that each running sequence decodes."""
    tokens_per_image: int = 1024
    kv_cache_tokens: int = 200_000
    host_seconds_per_image: float = 0.02
    """CPU time to decode and resize one image before its prefill; the GPU idles meanwhile."""
    max_model_len: int = 32_768
    full_batch_step_factor: float = 1.0
    """Decode step time of a full batch over that of one sequence (1: the step never slows)."""

    def decode_step_seconds(self, batch: int) -> float:
        """Wall time of one decode step over `batch` sequences."""
        growth = (batch - 1) / max(1, self.max_num_seqs - 1)
        return (1 + (self.full_batch_step_factor - 1) * growth) / self.decode_tokens_per_second

    def decode_work_seconds(self, batch: int) -> float:
        """The share of a decode step's time the SMs are fully used: the tokens it produced
        against a full batch's token rate, times the step time."""
        full = self.decode_step_seconds(self.max_num_seqs)
        return batch * full / self.max_num_seqs


class RequestRejectedError(ValueError):
    """The request can never be served (vLLM answers 400)."""


@dataclass
class SimRequest:
    """One chat completion in the engine."""

    request_id: int
    prompt_tokens: int
    images: int
    max_tokens: int
    arrival: float
    finish_reason: str = "length"
    """What the response and vllm:request_success report once max_tokens are generated."""
    admitted_at: float | None = None
    first_token_at: float | None = None
    finished_at: float | None = None
    generated: int = 0
    done: threading.Event = field(default_factory=threading.Event)

    @property
    def kv_tokens(self) -> int:
        """KV-cache tokens the request holds now."""
        return self.prompt_tokens + self.generated


def prompt_tokens(text_characters: int, images: int, tokens_per_image: int) -> int:
    """Prompt length in tokens: the text at four characters a token plus every image's tokens."""
    return max(1, math.ceil(text_characters / CHARS_PER_TEXT_TOKEN)) + images * tokens_per_image


class Engine:
    """A continuous-batching engine whose steps take real time."""

    def __init__(
        self,
        config: EngineConfig,
        clock: Callable[[], float] = time.monotonic,
        on_finish: Callable[[SimRequest], None] | None = None,
    ) -> None:
        self.config = config
        self._clock = clock
        self._on_finish = on_finish
        self._condition = threading.Condition()
        self._waiting: deque[SimRequest] = deque()
        self._running: list[SimRequest] = []
        self._ids = itertools.count(1)
        self._busy_seconds = 0.0
        self._busy_since: float | None = None
        self._work_seconds = 0.0
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name="engine", daemon=True)

    def start(self) -> None:
        """Start stepping."""
        self._thread.start()

    def stop(self) -> None:
        """Stop after the current step; unfinished requests are left unanswered."""
        with self._condition:
            self._stopping = True
            self._condition.notify_all()
        self._thread.join(timeout=10)

    def submit(
        self, prompt: int, images: int, max_tokens: int, finish_reason: str = "length"
    ) -> SimRequest:
        """Queue a request; raises RequestRejectedError if it could never fit."""
        if max_tokens < 1:
            raise RequestRejectedError("max_tokens must be at least 1")
        if prompt + max_tokens > self.config.max_model_len:
            raise RequestRejectedError(
                f"This model's maximum context length is {self.config.max_model_len} tokens. "
                f"However, you requested {prompt + max_tokens} tokens "
                f"({prompt} in the messages, {max_tokens} in the completion)."
            )
        if prompt + max_tokens > self.config.kv_cache_tokens:
            raise RequestRejectedError(
                f"the request needs {prompt + max_tokens} KV-cache tokens, "
                f"more than the {self.config.kv_cache_tokens} the engine has"
            )
        request = SimRequest(
            next(self._ids), prompt, images, max_tokens, self._clock(), finish_reason
        )
        with self._condition:
            self._waiting.append(request)
            self._condition.notify_all()
        return request

    @property
    def waiting(self) -> int:
        """Requests queued for admission (vllm:num_requests_waiting)."""
        with self._condition:
            return len(self._waiting)

    @property
    def running(self) -> int:
        """Requests in the batch (vllm:num_requests_running)."""
        with self._condition:
            return len(self._running)

    def kv_cache_usage(self) -> float:
        """Fraction of the KV cache in use (vllm:kv_cache_usage_perc, 0 to 1)."""
        with self._condition:
            used = sum(request.kv_tokens for request in self._running)
        return min(1.0, used / self.config.kv_cache_tokens)

    def gpu_busy_seconds(self) -> float:
        """Total wall time in which the simulated GPU executed kernels."""
        with self._condition:
            busy = self._busy_seconds
            if self._busy_since is not None:
                busy += self._clock() - self._busy_since
        return busy

    def gpu_work_seconds(self) -> float:
        """Total GPU time weighted by the share of its SMs the work used (completed steps)."""
        with self._condition:
            return self._work_seconds

    def _reserved(self) -> int:
        return sum(request.prompt_tokens + request.max_tokens for request in self._running)

    def _admit(self, now: float) -> list[SimRequest]:
        """Move waiting requests into the batch while slots and KV cache allow, in order."""
        admitted = []
        reserved = self._reserved()
        while self._waiting and len(self._running) < self.config.max_num_seqs:
            head = self._waiting[0]
            needed = head.prompt_tokens + head.max_tokens
            if reserved + needed > self.config.kv_cache_tokens:
                break
            self._waiting.popleft()
            head.admitted_at = now
            reserved += needed
            self._running.append(head)
            admitted.append(head)
        return admitted

    def _pause(self, seconds: float) -> bool:
        """Let wall time pass; False when the engine is stopping."""
        with self._condition:
            self._condition.wait_for(lambda: self._stopping, timeout=seconds)
            return not self._stopping

    def _loop(self) -> None:
        while True:
            with self._condition:
                self._condition.wait_for(
                    lambda: self._stopping or bool(self._waiting) or bool(self._running)
                )
                if self._stopping:
                    return
                admitted = self._admit(self._clock())
                batch = len(self._running)
            host = self.config.host_seconds_per_image * sum(r.images for r in admitted)
            prefill = sum(r.prompt_tokens for r in admitted) / self.config.prefill_tokens_per_second
            decode = self.config.decode_step_seconds(batch) if batch else 0.0
            if host and not self._pause(host):
                return
            with self._condition:
                self._busy_since = self._clock()
            proceed = self._pause(prefill + decode)
            work = prefill + self.config.decode_work_seconds(batch)
            finished = self._complete_step(work / (prefill + decode) if prefill + decode else 0.0)
            for request in finished:
                if self._on_finish is not None:
                    self._on_finish(request)
                request.done.set()
            if not proceed:
                return

    def _complete_step(self, work_share: float) -> list[SimRequest]:
        """Every running sequence gained a token; return the requests that are complete.
        `work_share` is the share of the step's SMs its work used."""
        with self._condition:
            now = self._clock()
            if self._busy_since is not None:
                self._busy_seconds += now - self._busy_since
                self._work_seconds += (now - self._busy_since) * work_share
                self._busy_since = None
            finished = []
            for request in self._running:
                request.generated += 1
                if request.first_token_at is None:
                    request.first_token_at = now
                if request.generated >= request.max_tokens:
                    request.finished_at = now
                    finished.append(request)
            self._running = [r for r in self._running if r.finished_at is None]
            return finished
