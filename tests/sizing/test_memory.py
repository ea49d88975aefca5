"""The memory model against vLLM's published start-up figures (memory-model.md Tables C, F, G)."""

from __future__ import annotations

import pytest

from vlm_operator.api.v1alpha1 import ArchitectureOverrides
from vlm_operator.catalog.architectures import Architecture, resolve_architecture
from vlm_operator.sizing.memory import (
    GIB,
    activation_bytes,
    kv_layout,
    non_torch_overhead_bytes,
    profile_run,
    weights_per_rank,
)

LLAMA_3_8B = ArchitectureOverrides(
    family="llava",
    parameters=8_030_261_248,
    vision_parameters=0,
    num_layers=32,
    hidden_size=4096,
    intermediate_size=14336,
    num_attention_heads=32,
    num_key_value_heads=8,
    head_dim=128,
    vocab_size=128256,
    max_position_embeddings=8192,
)
QWEN2_5_7B = ArchitectureOverrides(
    family="qwen2.5-vl",
    parameters=7_615_616_512,
    vision_parameters=0,
    num_layers=28,
    hidden_size=3584,
    intermediate_size=18944,
    num_attention_heads=28,
    num_key_value_heads=4,
    head_dim=128,
    vocab_size=152064,
    max_position_embeddings=32768,
)


def model(model_id: str, overrides: ArchitectureOverrides | None = None) -> Architecture:
    """An architecture from the catalog, or described by overrides."""
    return resolve_architecture(model_id, overrides)


# row, architecture, precision, tp, logged "Model loading took" GiB per rank
TABLE_F_WEIGHTS = [
    ("F3", model("google/gemma-3-27b-it"), "bf16", 4, 13.1665),
    ("F5", model("meta-llama/Llama-3.2-11B-Vision-Instruct"), "bf16", 1, 19.9073),
    ("F13 tp1", model("meta-llama/Meta-Llama-3-8B", LLAMA_3_8B), "bf16", 1, 14.96),
    ("F13 tp2", model("meta-llama/Meta-Llama-3-8B", LLAMA_3_8B), "bf16", 2, 7.48),
    ("F14", model("Qwen/Qwen2.5-7B-Instruct-AWQ", QWEN2_5_7B), "awq", 1, 5.20),
    ("G llava", model("llava-hf/llava-1.5-7b-hf"), "fp16", 1, 13.14),
    ("G qwen", model("Qwen/Qwen2.5-VL-7B-Instruct"), "bf16", 1, 15.67),
]


@pytest.mark.parametrize(
    ("row", "architecture", "precision", "tp", "logged_gib"),
    TABLE_F_WEIGHTS,
    ids=[row[0] for row in TABLE_F_WEIGHTS],
)
def test_weights_per_rank_within_3_percent(
    row: str, architecture: Architecture, precision: str, tp: int, logged_gib: float
) -> None:
    planned = weights_per_rank(architecture, precision, tp).total / GIB
    assert planned == pytest.approx(logged_gib, rel=0.03)


# Table C, "KV bytes/token bf16 (all layers)", and global layers only where they differ
TABLE_C_KV = [
    ("llava-hf/llava-1.5-7b-hf", 524288, 524288),
    ("llava-hf/llava-v1.6-mistral-7b-hf", 131072, 131072),
    ("Qwen/Qwen2-VL-2B-Instruct", 28672, 28672),
    ("Qwen/Qwen2-VL-7B-Instruct", 57344, 57344),
    ("Qwen/Qwen2-VL-72B-Instruct", 327680, 327680),
    ("Qwen/Qwen2.5-VL-3B-Instruct", 36864, 36864),
    ("Qwen/Qwen2.5-VL-7B-Instruct", 57344, 57344),
    ("Qwen/Qwen2.5-VL-32B-Instruct", 262144, 262144),
    ("Qwen/Qwen2.5-VL-72B-Instruct", 327680, 327680),
    ("OpenGVLab/InternVL3-8B", 57344, 57344),
    ("OpenGVLab/InternVL3-78B", 327680, 327680),
    ("meta-llama/Llama-3.2-11B-Vision-Instruct", 131072, 131072),
    ("meta-llama/Llama-3.2-90B-Vision-Instruct", 327680, 327680),
    ("google/gemma-3-4b-it", 139264, 20480),
    ("google/gemma-3-27b-it", 507904, 81920),
    ("microsoft/Phi-3.5-vision-instruct", 393216, 393216),
    ("deepseek-ai/deepseek-vl2", 34560, 34560),
    ("mistralai/Pixtral-12B-2409", 163840, 163840),
    ("HuggingFaceTB/SmolVLM-Instruct", 196608, 196608),
]


@pytest.mark.parametrize(("model_id", "all_layers", "growing"), TABLE_C_KV)
def test_kv_bytes_per_token_exact(model_id: str, all_layers: int, growing: int) -> None:
    layout = kv_layout(model(model_id), 1, 2, 2048)
    assert layout.bytes_per_token == all_layers
    assert layout.full_bytes_per_token == growing


@pytest.mark.parametrize(
    ("model_id", "tp", "dtype_bytes", "expected"),
    [
        ("Qwen/Qwen2-VL-2B-Instruct", 2, 2, 28672 // 2),
        ("Qwen/Qwen2-VL-2B-Instruct", 4, 2, 28672 // 2),  # replicated past 2 KV heads
        ("Qwen/Qwen2.5-VL-72B-Instruct", 8, 1, 327680 // 16),
        ("deepseek-ai/deepseek-vl2", 4, 2, 34560),  # MLA is not split by tp
    ],
)
def test_kv_bytes_per_token_per_rank(
    model_id: str, tp: int, dtype_bytes: int, expected: int
) -> None:
    assert kv_layout(model(model_id), tp, dtype_bytes, 2048).bytes_per_token == expected


def test_sliding_window_layers_keep_only_the_window() -> None:
    layout = kv_layout(model("google/gemma-3-27b-it"), 1, 2, 2048)
    long, longer = layout.request_bytes(65536), layout.request_bytes(131072)
    window = layout.window_bytes_per_token * 16 * ((1024 - 1 + 2048) // 16 + 2)
    assert long == 65536 * layout.full_bytes_per_token + window
    assert longer - long == 65536 * layout.full_bytes_per_token


def test_non_torch_overhead_grows_with_tensor_parallelism() -> None:
    sizes = [non_torch_overhead_bytes(tp) for tp in (1, 2, 4, 8)]
    assert sizes == sorted(sizes)
    assert sizes[0] == pytest.approx(0.25 * GIB, rel=0.01)


def test_video_profile_matches_the_measured_peak() -> None:
    """Table G: Qwen2.5-VL-7B profiled with one 114,688-token video: torch peak 15.42 GiB."""
    profile = profile_run(8192, 1024, 128000, 114688, 999)
    assert profile.vision_tokens == 114688
    peak = activation_bytes(model("Qwen/Qwen2.5-VL-7B-Instruct"), 1, profile) / GIB
    assert peak == pytest.approx(15.42, rel=0.06)


def test_decoder_profile_matches_the_measured_peak() -> None:
    """Table G: llava-1.5-7b, 16,384 batched tokens, no encoder profiled: 1.41 GiB."""
    profile = profile_run(16384, 1024, 4096, 0, 0)
    peak = activation_bytes(model("llava-hf/llava-1.5-7b-hf"), 1, profile) / GIB
    assert peak == pytest.approx(1.41, rel=0.05)


def test_profile_items_follow_the_encoder_budget() -> None:
    assert profile_run(2048, 16, 8192, 2116, 4).vision_tokens == 2116
    assert profile_run(8192, 16, 16384, 2116, 4).vision_tokens == 3 * 2116
    assert profile_run(8192, 16, 16384, 0, 0).encoder_cache_tokens == 0
