"""The costliest image inside the declared box, and vLLM's dummy image and encoder cache.

The search is checked by brute force: every image of a small box, and a lattice of sizes in
large boxes, must cost no more than the image the search returns. Expected figures for named
models come from vLLM's own counts (research memory-model.md Table B, vllm-mm-budget.md)."""

from __future__ import annotations

import itertools

import pytest

from vlm_operator.api.v1alpha1 import VisionModelSpec
from vlm_operator.catalog.architectures import Architecture, resolve_architecture
from vlm_operator.sizing import plan_visionmodel
from vlm_operator.sizing.image_tokens import (
    RULES,
    dummy_image_size,
    image_tokens,
    processor_limits,
    profiled_item_features,
    worst_case_image,
)

ONE_PER_FAMILY = {
    "llava": "llava-hf/llava-1.5-7b-hf",
    "llava-next": "llava-hf/llava-v1.6-mistral-7b-hf",
    "qwen2-vl": "Qwen/Qwen2-VL-7B-Instruct",
    "qwen2.5-vl": "Qwen/Qwen2.5-VL-7B-Instruct",
    "internvl": "OpenGVLab/InternVL3-8B",
    "mllama": "meta-llama/Llama-3.2-11B-Vision-Instruct",
    "gemma3": "google/gemma-3-4b-it",
    "phi3v": "microsoft/Phi-3.5-vision-instruct",
    "deepseek-vl2": "deepseek-ai/deepseek-vl2",
    "pixtral": "mistralai/Pixtral-12B-2409",
    "idefics3": "HuggingFaceTB/SmolVLM-Instruct",
}


def family_architecture(family: str) -> Architecture:
    """A catalog model of the family, or one described by the family alone."""
    if family in ONE_PER_FAMILY:
        return resolve_architecture(ONE_PER_FAMILY[family])
    from vlm_operator.api.v1alpha1 import ArchitectureOverrides

    overrides = ArchitectureOverrides.model_validate(
        {
            "family": family,
            "numLayers": 2,
            "hiddenSize": 64,
            "numAttentionHeads": 4,
            "vocabSize": 100,
            "maxPositionEmbeddings": 4096,
        }
    )
    return resolve_architecture(f"test/{family}", overrides)


def test_every_family_has_a_brute_force_check() -> None:
    assert set(RULES) <= {*ONE_PER_FAMILY, "qwen3-vl", "mistral3"}


def costliest_by_brute_force(
    architecture: Architecture, sizes: list[tuple[int, int]], limits: dict[str, int]
) -> int:
    """Most decoder tokens over the given sizes, counted one by one."""
    return max(image_tokens(architecture, w, h, limits=limits).decoder for w, h in sizes)


@pytest.mark.parametrize("family", sorted(RULES))
def test_no_image_in_a_small_box_costs_more(family: str) -> None:
    architecture = family_architecture(family)
    width, height = 96, 72
    limits = processor_limits(architecture, width, height)
    every = list(itertools.product(range(1, width + 1), range(1, height + 1)))
    (found_width, found_height), worst = worst_case_image(
        architecture, width, height, limits=limits
    )
    assert found_width <= width
    assert found_height <= height
    assert worst.decoder == costliest_by_brute_force(architecture, every, limits)


@pytest.mark.parametrize("family", sorted(RULES))
@pytest.mark.parametrize(("width", "height"), [(1024, 1024), (1920, 1080), (3840, 2160)])
def test_no_image_on_a_lattice_of_a_large_box_costs_more(
    family: str, width: int, height: int
) -> None:
    architecture = family_architecture(family)
    limits = processor_limits(architecture, width, height)
    lattice = [
        (w, h)
        for w in [*range(1, width + 1, 61), width]
        for h in [*range(1, height + 1, 47), height]
    ]
    _, worst = worst_case_image(architecture, width, height, limits=limits)
    assert worst.decoder >= costliest_by_brute_force(architecture, lattice, limits)


def test_pixtral_plans_the_square_that_fits_not_the_declared_widescreen() -> None:
    """The issue's example: 3840x2160 declared, a 1024x1024 image takes 4,160 tokens."""
    spec = VisionModelSpec.model_validate(
        {
            "model": {"id": "mistralai/Pixtral-12B-2409"},
            "workload": {"maxImageSize": {"width": 3840, "height": 2160}},
            "hardware": {"gpuProduct": "NVIDIA-H100-80GB-HBM3"},
        }
    )
    plan = plan_visionmodel(spec)
    assert plan.tokens_per_image == 4160
    assert plan.tokens_per_declared_image == 2340  # Table B: 64 x 36 embeddings + 36 rows
    assert plan.max_model_len >= 4160


def test_internvl_dummy_is_a_clipped_strip_and_the_cache_is_raised_to_hold_a_real_image() -> None:
    """vllm-mm-budget.md: InternVL3-8B at 1024x1024 profiles a 448x1024 dummy of 768
    embeddings; a real 1024x1024 image needs 2,560, so a 2048-token cache refuses it."""
    architecture = resolve_architecture("OpenGVLab/InternVL3-8B")
    limits = processor_limits(architecture, 1024, 1024)
    assert dummy_image_size(architecture, 1024, 1024, limits) == (448, 1024)
    assert profiled_item_features(architecture, 1024, 1024, limits=limits) == 768
    spec = VisionModelSpec.model_validate(
        {
            "model": {"id": "OpenGVLab/InternVL3-8B"},
            "workload": {"maxImageSize": {"width": 1024, "height": 1024}},
            "hardware": {"gpuProduct": "NVIDIA-L40S"},
        }
    )
    plan = plan_visionmodel(spec)
    assert plan.feasible, plan.reason
    batched = int(plan.engine_args[plan.engine_args.index("--max-num-batched-tokens") + 1])
    assert batched == 2560
    assert plan.encoder_cache_tokens == 2560


def test_hf_format_internvl_is_capped_with_the_kwarg_its_class_reads() -> None:
    chat = resolve_architecture("OpenGVLab/InternVL3-8B")
    assert processor_limits(chat, 1024, 1024) == {"max_dynamic_patch": 9}
    config = {
        "architectures": ["InternVLForConditionalGeneration"],
        "text_config": {
            "num_hidden_layers": 28,
            "hidden_size": 3584,
            "num_attention_heads": 28,
            "num_key_value_heads": 4,
            "vocab_size": 151674,
            "max_position_embeddings": 32768,
        },
    }
    hf = resolve_architecture("OpenGVLab/InternVL3-8B-hf", config=config)
    assert processor_limits(hf, 1024, 1024) == {"max_patches": 9}
    assert image_tokens(hf, 1024, 1024, limits={"max_patches": 9}).features == 2560
