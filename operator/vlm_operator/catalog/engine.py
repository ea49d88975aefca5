"""The one place that pins the vLLM engine: its version, its image and the defaults it applies."""

from __future__ import annotations

from dataclasses import dataclass

VLLM_VERSION = "0.32.0"
"""The vLLM release the operator deploys and the memory model describes."""

VLLM_IMAGE = f"vllm/vllm-openai:v{VLLM_VERSION}"
"""The container image of that release."""

SERVE_PORT = 8000
"""Port the OpenAI-compatible server listens on inside the pod."""

DEFAULT_GPU_MEMORY_UTILIZATION = 0.92
"""vLLM's default --gpu-memory-utilization in the pinned release."""

KV_BLOCK_SIZE = 16
"""Tokens per KV cache block (vLLM's default block size on CUDA)."""

MAX_CUDA_GRAPH_CAPTURE_SIZE = 512
"""Largest batch vLLM captures a CUDA graph for by default (1024 on Blackwell)."""

MAX_CUDA_GRAPH_CAPTURE_SIZE_BLACKWELL = 1024
"""Largest CUDA graph batch on compute capability 10.x."""


def parse_version(text: str) -> tuple[int, ...]:
    """Numeric parts of a release version such as "0.32.0"."""
    try:
        return tuple(int(part) for part in text.strip().lstrip("v").split("."))
    except ValueError as error:
        raise ValueError(f"not a release version: {text!r}") from error


@dataclass(frozen=True)
class VersionRange:
    """Releases of vLLM that can serve an architecture: first and last, both inclusive."""

    first: str
    last: str | None = None

    def __post_init__(self) -> None:
        parse_version(self.first)
        if self.last is not None:
            parse_version(self.last)

    def contains(self, version: str) -> bool:
        """Whether the given release lies in the range."""
        parsed = parse_version(version)
        if parsed < parse_version(self.first):
            return False
        return self.last is None or parsed <= parse_version(self.last)

    def describe(self) -> str:
        """The range in words, e.g. "vLLM 0.6.2 to 0.10.2" or "vLLM 0.7.2 and later"."""
        if self.last is None:
            return f"vLLM {self.first} and later"
        return f"vLLM {self.first} to {self.last}"
