"""A stand-in for NVIDIA's dcgm-exporter: DCGM_FI_DEV_GPU_UTIL and DCGM_FI_PROF_SM_ACTIVE for the
simulated engine's GPUs.

DCGM_FI_DEV_GPU_UTIL is the share of a sample period in which at least one kernel ran. That makes
it a misleading signal for LLM serving, and this exporter reproduces why:

- one decoding sequence keeps kernels running back to back, so a nearly idle replica reads as
  high as a saturated one;
- image preprocessing on the host stalls the GPU, so an engine whose queue grows because it is
  busy decoding images on the CPU reads low;
- the exporter publishes the average of its last collection interval (30 s by default in
  dcgm-exporter), so the value lags: an engine that just went idle still reads busy;
- the value is an integer percentage with measurement noise.

DCGM_FI_PROF_SM_ACTIVE, a profiling field, is the ratio (0-1) of SM cycles with work over the
interval. The simulator derives it from the engine's work time: prefill counts in full, a decode
step in proportion to the tokens it produced against a full batch's rate. The same sampler,
interval and noise apply; it is published as a ratio, as dcgm-exporter does.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class GpuIdentity:
    """The labels dcgm-exporter attaches, including the pod mapping from the kubelet."""

    pod: str
    namespace: str
    container: str = "vllm"
    hostname: str = "sim-node"
    model_name: str = "NVIDIA H100 80GB HBM3"


class UtilizationSampler:
    """Each GPU's utilization over the last completed interval, refreshed once per interval."""

    def __init__(
        self,
        busy_seconds: Callable[[], float],
        gpus: int = 1,
        interval_seconds: float = 30.0,
        noise_percent: float = 4.0,
        seed: int = 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._busy_seconds = busy_seconds
        self._interval = interval_seconds
        self._noise = noise_percent
        self._random = random.Random(seed)
        self._clock = clock
        self._lock = threading.Lock()
        self._values = [0.0] * gpus
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="dcgm", daemon=True)

    @property
    def gpus(self) -> int:
        """GPUs per replica."""
        return len(self._values)

    def start(self) -> None:
        """Start sampling."""
        self._thread.start()

    def stop(self) -> None:
        """Stop sampling."""
        self._stop.set()
        self._thread.join(timeout=10)

    def value(self, gpu: int) -> float:
        """The published DCGM_FI_DEV_GPU_UTIL of one GPU, in percent."""
        with self._lock:
            return self._values[gpu]

    def sample(self, busy_fraction: float) -> None:
        """Publish one interval's busy fraction for every GPU, with noise on GPUs that worked."""
        values = []
        for _ in self._values:
            percent = 100.0 * busy_fraction
            if percent > 0:
                percent += self._random.gauss(0.0, self._noise)
            values.append(float(round(max(0.0, min(100.0, percent)))))
        with self._lock:
            self._values = values

    def _loop(self) -> None:
        previous_time, previous_busy = self._clock(), self._busy_seconds()
        while not self._stop.wait(self._interval):
            now, busy = self._clock(), self._busy_seconds()
            elapsed = now - previous_time
            if elapsed > 0:
                self.sample(min(1.0, (busy - previous_busy) / elapsed))
            previous_time, previous_busy = now, busy
