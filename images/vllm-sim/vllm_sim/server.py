"""HTTP front ends: the vLLM OpenAI-compatible server and the dcgm-exporter endpoint."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast

from vllm_sim.dcgm import GpuIdentity, UtilizationSampler
from vllm_sim.engine import Engine, EngineConfig, RequestRejectedError, SimRequest, prompt_tokens
from vllm_sim.metrics import DcgmMetrics, VllmMetrics

PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"
REQUEST_TIMEOUT_SECONDS = 3600.0
"""A chat completion that has not finished after this long is answered with 504."""


class BadRequestError(ValueError):
    """The request body is not a chat completion the simulator accepts."""


@dataclass(frozen=True)
class ChatRequest:
    """What the engine needs to know about one chat completion."""

    model: str
    text_characters: int
    images: int
    max_tokens: int | None


def parse_chat_request(body: Any) -> ChatRequest:
    """Read the OpenAI chat-completions body: text and image_url content parts are counted."""
    if not isinstance(body, dict):
        raise BadRequestError("the body must be a JSON object")
    if body.get("stream"):
        raise BadRequestError("the simulator does not stream; send stream: false")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequestError("messages must be a non-empty list")
    characters, images = 0, 0
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            characters += len(content)
            continue
        if not isinstance(content, list):
            raise BadRequestError("every message needs content: a string or a list of parts")
        for part in content:
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text" and isinstance(part.get("text"), str):
                characters += len(part["text"])
            elif kind == "image_url":
                image = part.get("image_url")
                url = image.get("url") if isinstance(image, dict) else image
                if not isinstance(url, str) or not url:
                    raise BadRequestError("an image_url part needs image_url.url")
                images += 1
            else:
                raise BadRequestError(f"unsupported content part: {kind!r}")
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    if max_tokens is not None and (not isinstance(max_tokens, int) or max_tokens < 1):
        raise BadRequestError("max_tokens must be a positive integer")
    return ChatRequest(str(body.get("model", "")), characters, images, max_tokens)


class Simulator:
    """One simulated replica: the engine, its metrics, its GPUs and its start-up delay."""

    def __init__(
        self,
        engine_config: EngineConfig,
        model_name: str,
        identity: GpuIdentity,
        startup_seconds: float = 0.0,
        default_output_tokens: int = 256,
        max_images_per_request: int = 8,
        gpus: int = 1,
        dcgm_interval_seconds: float = 30.0,
        dcgm_noise_percent: float = 4.0,
        seed: int = 0,
        dcgm_profiling: bool = True,
    ) -> None:
        self.model_name = model_name
        self.default_output_tokens = default_output_tokens
        self.max_images_per_request = max_images_per_request
        self.engine = Engine(engine_config, on_finish=self._finished)
        self.vllm_metrics = VllmMetrics(self.engine, model_name)
        self.sampler = UtilizationSampler(
            self.engine.gpu_busy_seconds, gpus, dcgm_interval_seconds, dcgm_noise_percent, seed
        )
        self.activity_sampler = (
            UtilizationSampler(
                self.engine.gpu_work_seconds,
                gpus,
                dcgm_interval_seconds,
                dcgm_noise_percent,
                seed + 1,
            )
            if dcgm_profiling
            else None
        )
        self.dcgm_metrics = DcgmMetrics(self.sampler, identity, self.activity_sampler)
        self._loaded_at = time.monotonic() + startup_seconds
        self._created = int(time.time())

    @property
    def loaded(self) -> bool:
        """Whether the model has finished loading; until then the server answers 503."""
        return time.monotonic() >= self._loaded_at

    def start(self) -> None:
        """Start the engine and the GPU samplers."""
        self.engine.start()
        self.sampler.start()
        if self.activity_sampler is not None:
            self.activity_sampler.start()

    def stop(self) -> None:
        """Stop the engine and the GPU samplers."""
        self.engine.stop()
        self.sampler.stop()
        if self.activity_sampler is not None:
            self.activity_sampler.stop()

    def _finished(self, request: SimRequest) -> None:
        self.vllm_metrics.record(request)

    def models(self) -> dict[str, Any]:
        """The /v1/models answer."""
        return {
            "object": "list",
            "data": [
                {
                    "id": self.model_name,
                    "object": "model",
                    "created": self._created,
                    "owned_by": "vllm",
                    "root": self.model_name,
                    "max_model_len": self.engine.config.max_model_len,
                }
            ],
        }

    def complete(self, chat: ChatRequest) -> dict[str, Any]:
        """Serve one chat completion, blocking until the engine has generated every token."""
        if chat.images > self.max_images_per_request:
            raise BadRequestError(
                f"at most {self.max_images_per_request} images may be provided in one request"
            )
        prompt = prompt_tokens(
            chat.text_characters, chat.images, self.engine.config.tokens_per_image
        )
        # Without max_tokens the answer ends by itself after the default length.
        output = chat.max_tokens or self.default_output_tokens
        finish_reason = "length" if chat.max_tokens else "stop"
        request = self.engine.submit(prompt, chat.images, output, finish_reason)
        if not request.done.wait(REQUEST_TIMEOUT_SECONDS):
            raise TimeoutError(f"request {request.request_id} did not finish")
        return {
            "id": f"chatcmpl-sim-{request.request_id}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.model_name,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": " ".join(["sim"] * output)},
                    "finish_reason": request.finish_reason,
                }
            ],
            "usage": {
                "prompt_tokens": prompt,
                "completion_tokens": request.generated,
                "total_tokens": prompt + request.generated,
            },
        }


class SimulatorServer(ThreadingHTTPServer):
    """An HTTP server that knows its simulator."""

    daemon_threads = True
    request_queue_size = 128
    """The listen backlog; socketserver's default of 5 resets connections under a load test."""

    def __init__(
        self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], sim: Simulator
    ) -> None:
        super().__init__(address, handler)
        self.simulator = sim

    @property
    def url(self) -> str:
        """The base URL the server listens on."""
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    @property
    def simulator(self) -> Simulator:
        return cast(SimulatorServer, self.server).simulator

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base's name)
        """Quiet: a load test would otherwise print a line per request."""

    def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _send_json(self, status: int, payload: Any) -> None:
        self._send(status, json.dumps(payload).encode())

    def _send_error(self, status: int, message: str, kind: str) -> None:
        error = {"object": "error", "message": message, "type": kind, "code": status}
        self._send_json(status, error)


class ApiHandler(_Handler):
    """/health, /v1/models, /v1/chat/completions and /metrics, like vLLM's API server."""

    def do_GET(self) -> None:
        """Health, models and metrics."""
        if not self.simulator.loaded:
            self._send_error(503, "the model is still loading", "ServiceUnavailable")
        elif self.path == "/health":
            self._send(200, b"")
        elif self.path == "/v1/models":
            self._send_json(200, self.simulator.models())
        elif self.path == "/metrics":
            self._send(200, self.simulator.vllm_metrics.exposition(), PROMETHEUS_TEXT)
        else:
            self._send_error(404, f"no route {self.path}", "NotFoundError")

    def do_POST(self) -> None:
        """Chat completions."""
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        if self.path != "/v1/chat/completions":
            self._send_error(404, f"no route {self.path}", "NotFoundError")
            return
        if not self.simulator.loaded:
            self._send_error(503, "the model is still loading", "ServiceUnavailable")
            return
        try:
            chat = parse_chat_request(json.loads(raw or b"null"))
            if chat.model != self.simulator.model_name:
                self._send_error(404, f"The model `{chat.model}` does not exist.", "NotFoundError")
                return
            self._send_json(200, self.simulator.complete(chat))
        except (BadRequestError, RequestRejectedError, json.JSONDecodeError) as error:
            self._send_error(400, str(error), "BadRequestError")
        except TimeoutError as error:
            self._send_error(504, str(error), "Timeout")


class DcgmHandler(_Handler):
    """The exporter's /metrics; it works while the model loads, as a DaemonSet's would."""

    def do_GET(self) -> None:
        """Metrics."""
        if self.path == "/metrics":
            self._send(200, self.simulator.dcgm_metrics.exposition(), PROMETHEUS_TEXT)
        else:
            self._send_error(404, f"no route {self.path}", "NotFoundError")


def serve_in_background(server: SimulatorServer) -> threading.Thread:
    """Serve on a daemon thread; server.shutdown() stops it."""
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="http", daemon=True
    )
    thread.start()
    return thread
