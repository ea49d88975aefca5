"""The rendered arguments against vLLM 0.32's own multimodal budget code (make contract).

For every GPU in the catalog, the plan's `vllm serve` arguments are parsed by vLLM's parser;
vLLM's SchedulerConfig, its dummy-image clipping (dummy_inputs.py _get_dummy_images) and its
encoder budget (encoder_cache_manager.py compute_mm_encoder_budget) then give the encoder cache
vLLM would allocate. The costliest image inside the declared box, found by counting a lattice
of sizes with vLLM's own token functions, must fit in that cache, or vLLM would refuse it
("exceeds the pre-allocated encoder cache size"). Also: every multimodal class in vLLM's
registry is sized or refused by the catalog.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from vlm_operator.api.v1alpha1 import VisionModelSpec
from vlm_operator.catalog.architectures import sized_architectures, unsized_architectures
from vlm_operator.catalog.gpus import gpu_catalog
from vlm_operator.sizing import plan_visionmodel

pytestmark = pytest.mark.contract

BOXES = [(1024, 1024), (1920, 1080), (640, 480), (800, 3000)]

SMALL_TEXT_MODEL = {
    "numLayers": 24,
    "hiddenSize": 896,
    "intermediateSize": 4864,
    "numAttentionHeads": 14,
    "numKeyValueHeads": 2,
    "headDim": 64,
    "vocabSize": 151674,
    "maxPositionEmbeddings": 32768,
    "parameters": 938_000_000,
    "visionParameters": 304_000_000,
}
"""A 1B-class language model (InternVL3-1B's shape), so that every catalog GPU can hold it."""


@pytest.fixture(scope="module")
def vllm_budget() -> Any:
    """vLLM's budget pieces, imported once (importing vLLM takes a while)."""
    import os

    os.environ.setdefault("VLLM_TARGET_DEVICE", "cpu")
    from vllm.config.multimodal import MultiModalConfig
    from vllm.config.scheduler import SchedulerConfig
    from vllm.engine.arg_utils import AsyncEngineArgs
    from vllm.entrypoints.launchers.cli_args import make_arg_parser
    from vllm.multimodal.processing.dummy_inputs import BaseDummyInputsBuilder
    from vllm.utils.argparse_utils import FlexibleArgumentParser
    from vllm.v1.core.encoder_cache_manager import compute_mm_encoder_budget

    class Budget:
        def encoder_cache(
            self, arguments: list[str], most_features: tuple[int, int], count: Counter
        ) -> tuple[int, tuple[int, int]]:
            """The encoder cache vLLM sizes from these arguments, and its dummy image."""
            parsed = make_arg_parser(FlexibleArgumentParser()).parse_args(arguments)
            engine = AsyncEngineArgs.from_cli_args(parsed)
            scheduler = SchedulerConfig(
                max_model_len=engine.max_model_len,
                is_encoder_decoder=False,
                max_num_batched_tokens=engine.max_num_batched_tokens,
                max_num_seqs=engine.max_num_seqs,
                is_multimodal_model=True,
            )
            multimodal = MultiModalConfig(
                limit_per_prompt=engine.limit_mm_per_prompt,
                mm_processor_kwargs=engine.mm_processor_kwargs,
            )
            dummy = BaseDummyInputsBuilder._get_dummy_images(
                None,  # the method reads nothing from its builder
                width=most_features[0],
                height=most_features[1],
                num_images=1,
                overrides=multimodal.limit_per_prompt.get("image"),
            )[0]
            item = count(dummy.width, dummy.height)
            _, cache = compute_mm_encoder_budget(scheduler, {"image": item})
            return int(cache), (dummy.width, dummy.height)

    return Budget()


Counter = Callable[[int, int], int]


def internvl_counter(max_tiles: int) -> tuple[Counter, tuple[int, int]]:
    """Embeddings of an image and the most-features size, by vLLM's InternVL functions
    (transformers_utils/processors/internvl.py; internvl.py get_image_size_with_most_features)."""
    from vllm.transformers_utils.processors.internvl import (
        calculate_internvl_targets,
        get_internvl_target_ratios,
    )

    ratios = get_internvl_target_ratios(1, max_tiles)

    def count(width: int, height: int) -> int:
        blocks, _, _ = calculate_internvl_targets(
            orig_width=width,
            orig_height=height,
            target_ratios=ratios,
            image_size=448,
            use_thumbnail=True,
        )
        return int(blocks) * 256  # blocks include the thumbnail

    most, most_features = (448, 448), 0
    for columns, rows in ratios:
        features = count(448 * columns, 448 * rows)
        if features > most_features:
            most, most_features = (448 * columns, 448 * rows), features
    return count, most


def mistral3_counter() -> tuple[Counter, tuple[int, int]]:
    """vLLM's PixtralHFEncoderInfo for Mistral 3's vision config (image_size 1540, patch 14,
    spatial merge 2); the most-features size is image_size square (mistral3.py)."""
    import transformers
    from vllm.model_executor.models.pixtral import PixtralHFEncoderInfo

    config = transformers.Mistral3Config(
        vision_config={"image_size": 1540, "patch_size": 14}, spatial_merge_size=2
    )
    info = PixtralHFEncoderInfo(config)

    def count(width: int, height: int) -> int:
        return int(info.get_num_image_tokens(image_width=width, image_height=height))

    side = int(info.get_image_size())
    return count, (side, side)


def costliest(count: Counter, width: int, height: int, extra: tuple[int, int]) -> int:
    """Most embeddings over a lattice of sizes inside the box, plus the box and `extra`."""
    sizes = {(width, height), extra}
    sizes |= {(w, h) for w in range(16, width + 1, 37) for h in range(16, height + 1, 41)}
    return max(count(w, h) for w, h in sizes if w <= width and h <= height)


def spec_for(family: str, gpu: str, width: int, height: int, config_class: str) -> Any:
    return VisionModelSpec.model_validate(
        {
            "model": {"id": f"example/{family}-1b", "architecture": {"family": family,
                      **SMALL_TEXT_MODEL}},
            "workload": {"maxImageSize": {"width": width, "height": height}, "concurrency": 4},
            "hardware": {"gpuProduct": gpu, "maxGpusPerReplica": 1},
        }
    )  # fmt: skip


@pytest.mark.parametrize(("width", "height"), BOXES)
@pytest.mark.parametrize("family", ["internvl", "mistral3"])
def test_rendered_arguments_admit_the_costliest_image_on_every_gpu(
    vllm_budget: Any, family: str, width: int, height: int
) -> None:
    for gpu in gpu_catalog():
        plan = plan_visionmodel(spec_for(family, gpu.product, width, height, ""))
        assert plan.feasible, f"{gpu.product}: {plan.reason}"
        arguments = plan.engine_args
        if family == "internvl":
            kwargs = arguments[arguments.index("--mm-processor-kwargs") + 1]
            import json

            count, most = internvl_counter(json.loads(kwargs)["max_dynamic_patch"])
        else:
            count, most = mistral3_counter()
        cache, dummy = vllm_budget.encoder_cache(arguments, most, count)
        worst_width, worst_height = (int(side) for side in plan.worst_case_image.split("x"))
        needed = costliest(count, width, height, (worst_width, worst_height))
        assert cache >= needed, f"{gpu.product} {width}x{height}: dummy {dummy}"
        assert cache == plan.encoder_cache_tokens, gpu.product


def test_every_multimodal_class_in_the_registry_is_sized_or_refused() -> None:
    from vllm.model_executor.models.registry import _MULTIMODAL_MODELS

    registry = set(_MULTIMODAL_MODELS)
    covered = set(sized_architectures()) | set(unsized_architectures())
    assert registry - covered == set()
    # Classes the catalog sizes that the pinned vLLM no longer registers are served only by
    # older releases (the catalog's version range says so).
    assert set(sized_architectures()) - registry == {"MllamaForConditionalGeneration"}
