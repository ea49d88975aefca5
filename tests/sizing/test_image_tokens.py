"""Tokens per image against research memory-model.md Table B (vLLM's own counts)."""

from __future__ import annotations

from typing import Any

import pytest

from vlm_operator.catalog.architectures import resolve_architecture
from vlm_operator.sizing.image_tokens import (
    image_tokens,
    processor_limits,
    profiled_item_features,
    video_tokens,
    worst_case_image,
)

UNBOUNDED = 100_000
"""A box no image rule clips: the profiled item is then the family's maximum."""

IDEFICS3_8B = {"longest_edge": 1456, "tile_size": 364, "tokens_per_tile": 169}

# model, processor overrides, max tokens per item, 1024x1024, 1920x1080 (Table B columns)
TABLE_B: list[tuple[str, dict[str, Any], int, int, int]] = [
    ("llava-hf/llava-1.5-7b-hf", {}, 576, 576, 576),
    ("llava-hf/llava-v1.6-mistral-7b-hf", {}, 2928, 2928, 1948),
    ("Qwen/Qwen2-VL-7B-Instruct", {}, 16384, 1369, 2691),
    ("Qwen/Qwen2.5-VL-7B-Instruct", {}, 16384, 1369, 2691),
    ("OpenGVLab/InternVL3-8B", {}, 3328, 2560, 2304),
    ("meta-llama/Llama-3.2-11B-Vision-Instruct", {}, 6404, 6404, 6404),
    ("google/gemma-3-4b-it", {}, 256, 256, 256),
    ("HuggingFaceTB/SmolVLM-Instruct", {}, 1377, 1377, 1053),
    ("HuggingFaceTB/SmolVLM-Instruct", IDEFICS3_8B, 2873, 2873, 2197),
    ("mistralai/Pixtral-12B-2409", {}, 4096, 4096, 2304),
    ("microsoft/Phi-3.5-vision-instruct", {}, 781, 757, 757),
    ("microsoft/Phi-3.5-vision-instruct", {"num_crops": 16}, 2653, 2509, 2353),
    ("deepseek-ai/deepseek-vl2", {}, 2101, 2017, 1807),
]


@pytest.mark.parametrize(("model_id", "limits", "most", "square", "wide"), TABLE_B)
def test_table_b(model_id: str, limits: dict[str, Any], most: int, square: int, wide: int) -> None:
    architecture = resolve_architecture(model_id)
    assert profiled_item_features(architecture, UNBOUNDED, UNBOUNDED, limits=limits) == most
    _, worst = worst_case_image(architecture, UNBOUNDED, UNBOUNDED, limits=limits)
    assert worst.features == most
    assert image_tokens(architecture, 1024, 1024, limits=limits).features == square
    assert image_tokens(architecture, 1920, 1080, limits=limits).features == wide


@pytest.mark.parametrize(
    ("model_id", "square_decoder", "wide_decoder"),
    [
        ("mistralai/Pixtral-12B-2409", 4160, 2340),  # one [IMG_BREAK]/[IMG_END] per row
        ("Qwen/Qwen2.5-VL-7B-Instruct", 1371, 2693),  # vision_start and vision_end
        ("meta-llama/Llama-3.2-11B-Vision-Instruct", 1, 1),  # states go to cross-attention
        ("google/gemma-3-4b-it", 260, 260),
        # 4x4 and 4x3 tiles of 81 plus the global image; per tile 2 tags, a newline per row
        # but the last, one "\n\n", and 3 around the global image: 1377 + 39, 1053 + 30.
        ("HuggingFaceTB/SmolVLM-Instruct", 1416, 1083),
    ],
)
def test_decoder_tokens_include_wrappers(
    model_id: str, square_decoder: int, wide_decoder: int
) -> None:
    architecture = resolve_architecture(model_id)
    assert image_tokens(architecture, 1024, 1024).decoder == square_decoder
    assert image_tokens(architecture, 1920, 1080).decoder == wide_decoder


def test_deepseek_vl2_stops_tiling_beyond_two_images() -> None:
    architecture = resolve_architecture("deepseek-ai/deepseek-vl2")
    assert image_tokens(architecture, 1024, 1024, images_per_request=3).features == 421


@pytest.mark.parametrize(
    ("model_id", "limits"),
    [
        ("Qwen/Qwen2.5-VL-7B-Instruct", {"max_pixels": 1036 * 1036}),
        ("OpenGVLab/InternVL3-8B", {"max_dynamic_patch": 9}),
        ("google/gemma-3-4b-it", {}),
    ],
)
def test_processor_limits_cap_the_profile_at_the_declared_size(
    model_id: str, limits: dict[str, int]
) -> None:
    architecture = resolve_architecture(model_id)
    assert processor_limits(architecture, 1024, 1024) == limits
    declared = image_tokens(architecture, 1024, 1024).features
    assert image_tokens(architecture, 1024, 1024, limits=limits).features == declared
    assert profiled_item_features(architecture, 1024, 1024, limits=limits) <= declared
    _, worst = worst_case_image(architecture, 1024, 1024, limits=limits)
    assert worst.features == declared


def test_video_tokens() -> None:
    qwen = resolve_architecture("Qwen/Qwen2.5-VL-7B-Instruct")
    assert video_tokens(qwen, 1024, 1024, 32).features == 16 * 1369
    internvl = resolve_architecture("OpenGVLab/InternVL3-8B")
    assert video_tokens(internvl, 448, 448, 8).features == 8 * 256
    with pytest.raises(ValueError, match="no video"):
        video_tokens(resolve_architecture("google/gemma-3-4b-it"), 448, 448, 8)
