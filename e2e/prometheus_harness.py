"""Prometheus and simulated vLLM pods on loopback, for end-to-end tests of the autoscaler.

Prometheus is Debian's package, unpacked by e2e/prometheus/install.sh. It scrapes every second the
targets listed in a file_sd JSON file, which `Prometheus.set_targets` rewrites while it runs. A
`SimulatedPod` is one `python -m vllm_sim` process standing in for a vLLM pod: its API server (with
vLLM's `/metrics`) and its DCGM exporter listen on their own 127.0.0.1 ports. The tests register
both as targets labelled with the real pod's `namespace` and `pod`, so PromQL written for a cluster
(`sum(vllm:num_requests_waiting{namespace="ns"})`) works unchanged; `model_name` comes from the
vLLM metrics themselves.

Everything binds and connects to 127.0.0.1 only, and every wait and load loop is bounded.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from harness import REPO_ROOT, free_port, list_objects, wait_for

INSTALL_SCRIPT = REPO_ROOT / "e2e" / "prometheus" / "install.sh"
SIMULATOR_PATH = REPO_ROOT / "images" / "vllm-sim"
LOOPBACK = "127.0.0.1"
TINY_PNG = (
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYGD4"
    "DwABBAEAfbLI3wAAAABJRU5ErkJggg=="
)
"""A 1x1 PNG; the simulator counts images, it does not decode them."""

Sample = tuple[dict[str, str], float]
"""One element of an instant vector: its labels and its value."""


@functools.cache
def prometheus_binary() -> Path:
    """The prometheus binary, unpacked on first use by the project's install script."""
    result = subprocess.run(
        ["bash", str(INSTALL_SCRIPT)], capture_output=True, text=True, timeout=600, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"{INSTALL_SCRIPT} failed:\n{result.stderr}")
    return Path(result.stdout.strip().splitlines()[-1])


def _loopback_address(address: str) -> str:
    """`address` ("host:port") when its host is in 127.0.0.0/8; anything else is refused."""
    host, _, port = address.rpartition(":")
    if not host.startswith("127.") or not port.isdigit():
        raise ValueError(f"{address!r} is not a 127.0.0.0/8 host:port; tests stay on loopback")
    return address


class LoggedProcess:
    """A subprocess of the tests whose output goes to a log file."""

    log_path: Path
    _process: subprocess.Popen[bytes] | None

    def stop(self, grace_seconds: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after the grace period."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=grace_seconds)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=grace_seconds)

    def logs(self) -> str:
        """Everything the process printed."""
        if not self.log_path.exists():
            return ""
        return self.log_path.read_text(encoding="utf-8", errors="replace")


class Prometheus(LoggedProcess):
    """A Prometheus server on 127.0.0.1 that scrapes file_sd targets every second."""

    def __init__(
        self, workdir: Path, binary: Path | None = None, honor_labels: bool = True
    ) -> None:
        self.workdir = workdir
        self.binary = binary
        self.honor_labels = honor_labels
        self.port = free_port()
        self.targets_path = workdir / "targets.json"
        self.log_path = workdir / "prometheus.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The base URL of the HTTP API and UI."""
        return f"http://{LOOPBACK}:{self.port}"

    def config(self) -> dict[str, Any]:
        """The configuration: one job over the file_sd targets.

        `honor_labels` keeps the `pod` and `namespace` labels a DCGM exporter puts on its series
        (the alternative, `exported_pod`, is what dcgm-exporter's chart leaves by default);
        vLLM's series carry neither, so they take the target's labels. With
        `honor_labels=False` the exporter's labels collide with its target's and Prometheus
        renames them `exported_pod`/`exported_namespace`, as a default scrape does."""
        return {
            "global": {
                "scrape_interval": "1s",
                "scrape_timeout": "1s",
                "evaluation_interval": "1s",
            },
            "scrape_configs": [
                {
                    "job_name": "simulated-pods",
                    "honor_labels": self.honor_labels,
                    "file_sd_configs": [
                        {"files": [str(self.targets_path)], "refresh_interval": "1s"}
                    ],
                }
            ],
        }

    def start(self, timeout: float = 60.0) -> None:
        """Start Prometheus with no targets and wait until it reports ready."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        config_path = self.workdir / "prometheus.yml"
        config_path.write_text(json.dumps(self.config(), indent=2), encoding="utf-8")
        self.set_targets([])
        command = [
            str(self.binary or prometheus_binary()),
            f"--config.file={config_path}",
            f"--storage.tsdb.path={self.workdir / 'data'}",
            "--storage.tsdb.retention.time=1h",
            f"--web.listen-address={LOOPBACK}:{self.port}",
        ]
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        wait_for(self._ready, timeout, f"Prometheus ready at {self.url}")

    def _ready(self) -> bool:
        if self._process is not None and self._process.poll() is not None:
            raise AssertionError(f"prometheus exited early:\n{self.logs()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def set_targets(self, targets: Iterable[tuple[str, Mapping[str, str]]]) -> None:
        """Replace the scraped targets: `(host:port, labels)` pairs, hosts in 127.0.0.0/8.

        The file is replaced atomically, so Prometheus never reads half of it. It rereads the file
        every second, but hands new targets to its scrape loops only every 5 s: allow about 6 s
        before a new target's first sample."""
        groups = [
            {"targets": [_loopback_address(address)], "labels": dict(labels)}
            for address, labels in targets
        ]
        staging = self.targets_path.with_suffix(".json.tmp")
        staging.write_text(json.dumps(groups, indent=2), encoding="utf-8")
        os.replace(staging, self.targets_path)

    def query(self, promql: str) -> list[Sample]:
        """An instant query's result: vector elements, or one unlabelled sample for a scalar."""
        address = f"{self.url}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
        with urllib.request.urlopen(address, timeout=5) as response:
            answer = json.load(response)
        if answer.get("status") != "success":
            raise AssertionError(f"query {promql!r} failed: {answer}")
        data = answer["data"]
        if data["resultType"] == "scalar":
            return [({}, float(data["result"][1]))]
        if data["resultType"] != "vector":
            raise AssertionError(f"query {promql!r} returned a {data['resultType']}, not a vector")
        return [(dict(item["metric"]), float(item["value"][1])) for item in data["result"]]

    def wait_for_series(
        self,
        promql: str,
        timeout: float,
        accept: Callable[[list[Sample]], bool] = bool,
    ) -> list[Sample]:
        """Poll `promql` until its result is non-empty and `accept` holds, and return it."""

        def accepted() -> list[Sample] | None:
            samples = self.query(promql)
            return samples if samples and accept(samples) else None

        return wait_for(accepted, timeout, f"Prometheus to answer {promql!r} as expected")

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop()


@dataclass
class LoadResult:
    """What a bounded load run achieved, as the client saw it."""

    sent: int = 0
    succeeded: int = 0
    failed: int = 0
    dropped: int = 0
    """Arrivals not sent because `max_in_flight` requests were already outstanding."""
    latencies: list[float] = field(default_factory=list)
    elapsed_seconds: float = 0.0
    errors: list[str] = field(default_factory=list)

    @property
    def requests_per_second(self) -> float:
        """Completed requests per second of wall time."""
        return self.succeeded / self.elapsed_seconds if self.elapsed_seconds > 0 else 0.0


class LoadRun:
    """Open-loop load in the background: a fixed arrival rate for a fixed duration."""

    def __init__(
        self,
        send: Callable[[], float],
        rate_per_second: float,
        duration_seconds: float,
        max_in_flight: int,
    ) -> None:
        self.result = LoadResult()
        self._send = send
        self._total = max(1, round(rate_per_second * duration_seconds))
        self._interval = 1.0 / rate_per_second
        self._slots = threading.BoundedSemaphore(max_in_flight)
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=max_in_flight, thread_name_prefix="load")
        self._thread = threading.Thread(target=self._arrivals, name="load-arrivals", daemon=True)
        self._started = time.monotonic()
        self._thread.start()

    def _arrivals(self) -> None:
        for index in range(self._total):
            due = self._started + index * self._interval
            if self._stopped.wait(max(0.0, due - time.monotonic())):
                break
            if not self._slots.acquire(blocking=False):
                with self._lock:
                    self.result.dropped += 1
                continue
            with self._lock:
                self.result.sent += 1
            self._pool.submit(self._one)
        self._pool.shutdown(wait=True)
        self.result.elapsed_seconds = time.monotonic() - self._started

    def _one(self) -> None:
        try:
            latency = self._send()
        except (OSError, ValueError) as error:
            with self._lock:
                self.result.failed += 1
                self.result.errors.append(str(error))
        else:
            with self._lock:
                self.result.succeeded += 1
                self.result.latencies.append(latency)
        finally:
            self._slots.release()

    def stop(self) -> None:
        """Send no further requests; those in flight finish."""
        self._stopped.set()

    def wait(self, timeout: float) -> LoadResult:
        """Wait until the last request has finished, and return the result."""
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise AssertionError(f"load still running after {timeout:.0f}s")
        return self.result


class SimulatedPod(LoggedProcess):
    """`python -m vllm_sim` on 127.0.0.1, standing in for one vLLM pod and its GPU's exporter.

    The settings are the simulator's flags. Images are preprocessed one after another on the
    engine's critical path (`host_seconds_per_image`), which caps a pod at about 48 requests/s
    with one image each at the default; text-only ones reach about 1,000 requests/s on two cores."""

    def __init__(
        self,
        pod: str,
        namespace: str,
        workdir: Path,
        model_name: str = "Qwen/Qwen2.5-VL-7B-Instruct",
        max_num_seqs: int = 4,
        prefill_tokens_per_second: float = 50_000.0,
        decode_tokens_per_second: float = 50.0,
        tokens_per_image: int = 256,
        kv_cache_tokens: int = 200_000,
        host_seconds_per_image: float = 0.02,
        startup_seconds: float = 0.0,
        dcgm_interval_seconds: float = 1.0,
        dcgm_profiling: bool = True,
        port: int | None = None,
    ) -> None:
        self.pod = pod
        self.namespace = namespace
        self.model_name = model_name
        self.port = free_port() if port is None else port
        self.dcgm_port = free_port()
        self.log_path = workdir / f"vllm-sim-{namespace}-{pod}.log"
        self.arguments = [
            "--host",
            LOOPBACK,
            "--port",
            str(self.port),
            "--dcgm-port",
            str(self.dcgm_port),
            "--served-model-name",
            model_name,
            "--max-num-seqs",
            str(max_num_seqs),
            "--prefill-tokens-per-second",
            str(prefill_tokens_per_second),
            "--decode-tokens-per-second",
            str(decode_tokens_per_second),
            "--tokens-per-image",
            str(tokens_per_image),
            "--kv-cache-tokens",
            str(kv_cache_tokens),
            "--host-seconds-per-image",
            str(host_seconds_per_image),
            "--startup-seconds",
            str(startup_seconds),
            "--dcgm-interval-seconds",
            str(dcgm_interval_seconds),
            "--pod",
            pod,
            "--namespace",
            namespace,
            *([] if dcgm_profiling else ["--no-dcgm-profiling"]),
        ]
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible API, /health and vLLM's /metrics."""
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def metrics_target(self) -> str:
        """host:port of vLLM's /metrics, for Prometheus."""
        return f"{LOOPBACK}:{self.port}"

    @property
    def dcgm_target(self) -> str:
        """host:port of the DCGM exporter's /metrics, for Prometheus."""
        return f"{LOOPBACK}:{self.dcgm_port}"

    @property
    def labels(self) -> dict[str, str]:
        """The target labels Prometheus would get from the real pod."""
        return {"namespace": self.namespace, "pod": self.pod}

    def targets(
        self, exporter_labels: Mapping[str, str] | None = None
    ) -> list[tuple[str, dict[str, str]]]:
        """Both scrape targets for `Prometheus.set_targets`: vLLM's labelled with the pod, the
        DCGM exporter's with the pod too, or with `exporter_labels` (the exporter DaemonSet
        pod's own, as a real scrape labels it)."""
        dcgm_labels = self.labels if exporter_labels is None else dict(exporter_labels)
        return [(self.metrics_target, self.labels), (self.dcgm_target, dcgm_labels)]

    def start(self, timeout: float = 30.0) -> None:
        """Start the process and wait until both ports accept connections (it may still load)."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        path = os.pathsep.join(filter(None, [str(SIMULATOR_PATH), os.environ.get("PYTHONPATH")]))
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "vllm_sim", *self.arguments],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONPATH": path},
            )
        wait_for(self._listening, timeout, f"simulated pod {self.namespace}/{self.pod} to listen")

    def _listening(self) -> bool:
        if self._process is not None and self._process.poll() is not None:
            raise AssertionError(f"vllm_sim exited early:\n{self.logs()[-3000:]}")
        return self.health_status() != 0 and self._answers(f"http://{self.dcgm_target}/metrics")

    @staticmethod
    def _answers(url: str) -> bool:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return True
        except urllib.error.HTTPError:
            return True
        except OSError:
            return False

    def health_status(self) -> int:
        """The HTTP status of /health (503 while the model loads), or 0 when nothing answers."""
        try:
            with urllib.request.urlopen(f"{self.base_url}/health", timeout=2) as response:
                return int(response.status)
        except urllib.error.HTTPError as error:
            return error.code
        except OSError:
            return 0

    def chat(self, images: int = 1, max_tokens: int = 16, timeout: float = 60.0) -> dict[str, Any]:
        """One chat completion with `images` image_url parts; the parsed response."""
        content: list[dict[str, Any]] = [{"type": "text", "text": "Describe these images."}]
        content += [{"type": "image_url", "image_url": {"url": TINY_PNG}}] * images
        body = {
            "model": self.model_name,
            "messages": [{"role": "user", "content": content}],
            "max_tokens": max_tokens,
        }
        request = urllib.request.Request(
            f"{self.base_url}/v1/chat/completions",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:
            answer: dict[str, Any] = json.load(response)
        return answer

    def _timed_chat(self, images: int, max_tokens: int, timeout: float) -> float:
        started = time.monotonic()
        self.chat(images, max_tokens, timeout)
        return time.monotonic() - started

    def send_requests(
        self,
        count: int,
        concurrency: int,
        images: int = 1,
        max_tokens: int = 16,
        timeout: float = 60.0,
    ) -> LoadResult:
        """Send `count` chat completions, `concurrency` at a time, and wait for all of them."""
        send = functools.partial(self._timed_chat, images, max_tokens, timeout)
        result = LoadResult()
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="load") as pool:
            futures = [pool.submit(send) for _ in range(count)]
            for future in futures:
                result.sent += 1
                error = future.exception(timeout=timeout + 5)
                if error is None:
                    result.succeeded += 1
                    result.latencies.append(future.result())
                else:
                    result.failed += 1
                    result.errors.append(str(error))
        result.elapsed_seconds = time.monotonic() - started
        return result

    def start_load(
        self,
        rate_per_second: float,
        duration_seconds: float,
        images: int = 1,
        max_tokens: int = 16,
        max_in_flight: int = 64,
        timeout: float = 60.0,
    ) -> LoadRun:
        """Start open-loop load in the background: evenly spaced arrivals, bounded in number."""
        send = functools.partial(self._timed_chat, images, max_tokens, timeout)
        return LoadRun(send, rate_per_second, duration_seconds, max_in_flight)

    def metrics_text(self) -> str:
        """vLLM's /metrics as text."""
        with urllib.request.urlopen(f"{self.base_url}/metrics", timeout=5) as response:
            return str(response.read().decode())


class PodMirror:
    """Keeps one simulator per pod of the VisionModel, and Prometheus's targets in step."""

    def __init__(
        self,
        namespace: str,
        prometheus: Prometheus,
        workdir: Path,
        visionmodel: str = "qwen-vl",
        max_num_seqs: int = 2,
        port: int | None = None,
        extra_targets: list[tuple[str, dict[str, str]]] | None = None,
    ) -> None:
        """`port` fixes the API port of every simulator (one pod at a time), for a client that
        must know it in advance; `extra_targets` are scraped besides the pods."""
        self.namespace = namespace
        self.selector = f"vlm-operator.io/visionmodel={visionmodel}"
        self.max_num_seqs = max_num_seqs
        self.port = port
        self.extra_targets = extra_targets or []
        self.prometheus = prometheus
        self.workdir = workdir
        self.pods: dict[str, SimulatedPod] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            self.sync()

    def sync(self) -> None:
        """Start simulators for new pods, stop those of deleted pods, rewrite the targets."""
        names = {
            pod["metadata"]["name"]
            for pod in list_objects("pod", self.namespace, self.selector)
            if pod["status"].get("phase") == "Running"
            and "deletionTimestamp" not in pod["metadata"]
        }
        with self._lock:
            for name in names - self.pods.keys():
                simulated = SimulatedPod(
                    name,
                    self.namespace,
                    self.workdir,
                    max_num_seqs=self.max_num_seqs,
                    decode_tokens_per_second=25.0,
                    port=self.port,
                )
                simulated.start()
                self.pods[name] = simulated
            for name in self.pods.keys() - names:
                self.pods.pop(name).stop()
            targets = [target for pod in self.pods.values() for target in pod.targets()]
        self.prometheus.set_targets(targets + self.extra_targets)

    def serving(self) -> list[SimulatedPod]:
        with self._lock:
            return list(self.pods.values())

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        with self._lock:
            for pod in self.pods.values():
                pod.stop()
            self.pods.clear()
