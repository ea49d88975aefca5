"""Token rules against the real transformers processors, over a grid of image sizes.

transformers is pinned to the release vLLM 0.32 accepts. Each processor is built offline from
the constructor arguments of the checkpoint's processor_config.json (no hub access) with its
PIL backend, and counts tokens its own way: the processor's _get_num_multimodal_tokens, the
image processor's get_number_of_image_patches, or the size it resizes a real image to.
Families transformers has no processor for (Phi-3.5-vision, DeepSeek-VL2: remote code) are
checked against vLLM's counts in test_image_tokens.py instead.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

import numpy
import pytest
import transformers
from PIL import Image
from tokenizers import Tokenizer, models, pre_tokenizers

from vlm_operator.api.v1alpha1 import VisionModelSpec
from vlm_operator.catalog.architectures import Architecture, resolve_architecture
from vlm_operator.sizing import plan_visionmodel
from vlm_operator.sizing.image_tokens import image_tokens

transformers.logging.set_verbosity_error()


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """No hub: every processor here is built from constructor arguments."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


GRID = [
    (1024, 1024),  # square
    (224, 224),
    (1600, 1200),  # 4:3
    (640, 480),
    (1920, 1080),  # 16:9
    (1280, 720),
    (300, 2400),  # very tall
    (120, 3000),
    (2400, 300),  # very wide
    (3000, 120),
    (16, 16),  # tiny
    (40, 30),
    (7680, 4320),  # huge
    (6000, 6000),
]


def offline_tokenizer(*special: str) -> Any:
    """A word-level tokenizer holding the processor's special tokens, built on the spot."""
    vocab = {"[UNK]": 0, "\n": 1, **{token: index + 2 for index, token in enumerate(special)}}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="[UNK]", additional_special_tokens=list(special)
    )


@cache
def llava_processor() -> Any:
    image_processor = transformers.CLIPImageProcessorPil(
        size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336}
    )
    return transformers.LlavaProcessor(
        image_processor=image_processor,
        tokenizer=offline_tokenizer("<image>"),
        patch_size=14,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
    )


@cache
def llava_next_processor() -> Any:
    image_processor = transformers.LlavaNextImageProcessorPil(
        image_grid_pinpoints=[[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]],
        size={"shortest_edge": 336},
        crop_size={"height": 336, "width": 336},
    )
    return transformers.LlavaNextProcessor(
        image_processor=image_processor,
        tokenizer=offline_tokenizer("<image>"),
        patch_size=14,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
    )


def processor_tokens(processor: Any, width: int, height: int) -> int:
    """Placeholder tokens as the processor itself counts them."""
    counted = processor._get_num_multimodal_tokens(image_sizes=[(height, width)])
    return int(counted["num_image_tokens"][0])


@cache
def qwen_image_processor(patch: int, min_pixels: int, max_pixels: int) -> Any:
    return transformers.Qwen2VLImageProcessorPil(
        patch_size=patch,
        merge_size=2,
        temporal_patch_size=2,
        size={"shortest_edge": min_pixels, "longest_edge": max_pixels},
    )


def qwen_tokens(patch: int, min_pixels: int, max_pixels: int) -> Callable[[int, int], int]:
    def count(width: int, height: int) -> int:
        processor = qwen_image_processor(patch, min_pixels, max_pixels)
        return int(processor.get_number_of_image_patches(height, width, {})) // 4

    return count


@cache
def internvl_image_processor() -> Any:
    return transformers.GotOcr2ImageProcessorPil(
        crop_to_patches=True, min_patches=1, max_patches=12, size={"height": 448, "width": 448}
    )


def internvl_tokens(width: int, height: int) -> int:
    tiles = internvl_image_processor().get_number_of_image_patches(height, width, {})
    return int(tiles) * 256


@cache
def idefics3_image_processor() -> Any:
    return transformers.Idefics3ImageProcessorPil(
        size={"longest_edge": 1536}, max_image_size={"longest_edge": 384}
    )


def idefics3_tokens(width: int, height: int) -> int:
    tiles, _, _ = idefics3_image_processor().get_number_of_image_patches(height, width, {})
    return int(tiles) * 81


def blank(width: int, height: int) -> Any:
    """A width x height RGB image as an array view that allocates one pixel."""
    return numpy.broadcast_to(numpy.zeros((1, 1, 3), dtype=numpy.uint8), (height, width, 3))


def pixtral_tokens(patch: int, longest: int) -> Callable[[int, int], int]:
    """Embeddings of the size the image processor's own resize picks (one per patch)."""
    from transformers.models.pixtral.image_processing_pil_pixtral import (
        get_resize_output_image_size,
    )

    def count(width: int, height: int) -> int:
        resized_height, resized_width = get_resize_output_image_size(
            blank(width, height), size=(longest, longest), patch_size=patch,
            input_data_format="channels_last",
        )  # fmt: skip
        return int(resized_height // patch) * int(resized_width // patch)

    return count


def gemma3_tokens(width: int, height: int) -> int:
    """256 per crop plus the whole image, crops as the image processor makes them. With
    pan-and-scan off (the checkpoints' default) the count cannot depend on the size, so the
    image is processed at most 64 pixels a side to keep the suite fast."""
    processor = transformers.Gemma3ImageProcessorPil(do_pan_and_scan=False)
    crops = processor(
        Image.fromarray(numpy.ascontiguousarray(blank(min(width, 64), min(height, 64)))),
        return_tensors=None,
    )["num_crops"][0]
    return (int(crops) + 1) * 256


REAL: dict[str, tuple[str, Callable[[int, int], int], bool]] = {
    # family: (model, real count, whether the count includes the wrapper tokens)
    "llava": ("llava-hf/llava-1.5-7b-hf", lambda w, h: processor_tokens(llava_processor(), w, h),
              True),
    "llava-next": ("llava-hf/llava-v1.6-mistral-7b-hf",
                   lambda w, h: processor_tokens(llava_next_processor(), w, h), True),
    "qwen2-vl": ("Qwen/Qwen2-VL-7B-Instruct", qwen_tokens(14, 3136, 12845056), False),
    "qwen2.5-vl": ("Qwen/Qwen2.5-VL-7B-Instruct", qwen_tokens(14, 3136, 12845056), False),
    "qwen3-vl": ("Qwen/Qwen3-VL-8B-Instruct", qwen_tokens(16, 65536, 16777216), False),
    "internvl": ("OpenGVLab/InternVL3-8B", internvl_tokens, False),
    "gemma3": ("google/gemma-3-4b-it", gemma3_tokens, False),
    "idefics3": ("HuggingFaceTB/SmolVLM-Instruct", idefics3_tokens, False),
    "pixtral": ("mistralai/Pixtral-12B-2409", pixtral_tokens(16, 1024), False),
    "mistral3": ("mistralai/Mistral-Small-3.1-24B-Instruct-2503", pixtral_tokens(28, 1540),
                 False),
}  # fmt: skip


def family_model(family: str, model_id: str) -> Architecture:
    """The catalog entry, or the family alone for models the catalog does not list."""
    from vlm_operator.api.v1alpha1 import ArchitectureOverrides
    from vlm_operator.catalog.architectures import catalog_model_ids

    if model_id in catalog_model_ids():
        return resolve_architecture(model_id)
    overrides = ArchitectureOverrides.model_validate(
        {
            "family": family,
            "numLayers": 2,
            "hiddenSize": 64,
            "numAttentionHeads": 4,
            "vocabSize": 100,
            "maxPositionEmbeddings": 1_000_000,
        }
    )
    return resolve_architecture(model_id, overrides)


@pytest.mark.parametrize("family", sorted(REAL))
def test_tokens_per_image_match_the_real_processor(family: str) -> None:
    model_id, real, counts_wrappers = REAL[family]
    architecture = family_model(family, model_id)
    for width, height in GRID:
        planned = image_tokens(architecture, width, height)
        expected = real(width, height)
        got = planned.decoder if counts_wrappers else planned.features
        assert got == expected, f"{family} {width}x{height}"


@pytest.mark.parametrize("family", ["qwen2.5-vl", "internvl", "pixtral", "idefics3"])
def test_plan_reports_the_real_count_of_the_declared_size(family: str) -> None:
    model_id, real, _ = REAL[family]
    architecture = resolve_architecture(model_id)
    spec = VisionModelSpec.model_validate(
        {
            "model": {"id": model_id},
            "workload": {"maxImageSize": {"width": 1920, "height": 1080}},
            "hardware": {"gpuProduct": "NVIDIA-H100-80GB-HBM3"},
        }
    )
    plan = plan_visionmodel(spec)
    wrappers = image_tokens(architecture, 1920, 1080)
    assert plan.tokens_per_declared_image - (wrappers.decoder - wrappers.features) == real(
        1920, 1080
    )
