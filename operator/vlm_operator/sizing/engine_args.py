"""Every `vllm serve` flag the operator writes, in the pinned vLLM's syntax. Nothing else in
the code base spells a vLLM flag."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from vlm_operator.api.config import TRUST_REMOTE_CODE
from vlm_operator.catalog.engine import SERVE_PORT

DTYPES = {"bf16": "bfloat16", "fp16": "float16"}
"""--dtype values of the 16-bit precisions."""


@dataclass(frozen=True)
class EngineSettings:
    """The settings a plan decides, in the operator's words."""

    model_id: str
    served_name: str
    revision: str | None
    tensor_parallel_size: int
    max_model_len: int
    max_num_seqs: int
    max_num_batched_tokens: int
    gpu_memory_utilization: float
    precision: str
    activation_dtype: str
    """bf16 or fp16: the compute type of quantized precisions."""
    online_quantization: bool
    """True when fp8 weights are produced at load time from a 16-bit checkpoint."""
    kv_cache_dtype: str
    images_per_prompt: int
    image_width: int
    image_height: int
    """The dummy image's size: the costliest image inside the declared box."""
    video_width: int
    video_height: int
    videos_per_prompt: int
    video_frames: int
    processor_kwargs: Mapping[str, Any] = field(default_factory=dict)


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def limit_mm_per_prompt(settings: EngineSettings) -> dict[str, Any]:
    """Items per prompt, with the dummy sizes vLLM's profile run should use (vLLM >= 0.11)."""
    image: int | dict[str, int] = 0
    if settings.images_per_prompt:
        image = {
            "count": settings.images_per_prompt,
            "width": settings.image_width,
            "height": settings.image_height,
        }
    video: int | dict[str, int] = 0
    if settings.videos_per_prompt:
        video = {
            "count": settings.videos_per_prompt,
            "num_frames": settings.video_frames,
            "width": settings.video_width,
            "height": settings.video_height,
        }
    return {"image": image, "video": video}


def engine_arguments(settings: EngineSettings) -> list[str]:
    """Everything after `vllm serve`: the model, then the flags."""
    arguments = [
        settings.model_id,
        "--port",
        str(SERVE_PORT),
        "--served-model-name",
        settings.served_name,
    ]
    if settings.revision:
        arguments += ["--revision", settings.revision]
    arguments += [
        "--tensor-parallel-size",
        str(settings.tensor_parallel_size),
        "--max-model-len",
        str(settings.max_model_len),
        "--max-num-seqs",
        str(settings.max_num_seqs),
        "--max-num-batched-tokens",
        str(settings.max_num_batched_tokens),
        "--gpu-memory-utilization",
        f"{settings.gpu_memory_utilization:.2f}",
        "--dtype",
        DTYPES.get(settings.precision, DTYPES[settings.activation_dtype]),
    ]
    if settings.online_quantization:
        arguments += ["--quantization", "fp8"]
    arguments += [
        "--kv-cache-dtype",
        settings.kv_cache_dtype,
        "--limit-mm-per-prompt",
        _json(limit_mm_per_prompt(settings)),
    ]
    if settings.processor_kwargs:
        arguments += ["--mm-processor-kwargs", _json(dict(settings.processor_kwargs))]
    return arguments


_UNAMBIGUOUS_PREFIX = len("--trust-rem")
"""vLLM's parser accepts unambiguous abbreviations; --trust-rem is the shortest one."""


def requests_trust_remote_code(extra_args: list[str]) -> bool:
    """Whether extra arguments turn on --trust-remote-code in any spelling vLLM's parser accepts:
    underscores for dashes and any unambiguous abbreviation."""
    for arg in extra_args:
        name = arg.split("=", 1)[0].replace("_", "-")
        if len(name) >= _UNAMBIGUOUS_PREFIX and TRUST_REMOTE_CODE.startswith(name):
            return True
    return False
