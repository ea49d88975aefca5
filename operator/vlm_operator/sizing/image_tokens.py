"""Tokens per image and per video, family by family, as vLLM's processors count them.

Each rule reproduces the pinned vLLM's multimodal processing for one family (research
memory-model.md, Table B and notes B.1-B.12) from the checkpoint's processor defaults, which
live in the catalog. `features` are the vision embeddings one image yields (what vLLM's profiler
and encoder cache count); `decoder` are the context tokens the image takes, wrapper tokens
included.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from vlm_operator.catalog.architectures import Architecture

Processor = Mapping[str, Any]
Size = tuple[int, int]
"""(width, height) in pixels."""


@dataclass(frozen=True)
class ImageTokens:
    """What one image costs."""

    features: int
    """Vision embeddings (placeholder tokens) vLLM computes for the image."""
    decoder: int
    """Decoder context tokens the image occupies, wrapper tokens included."""


def _select_best_resolution(
    width: int, height: int, candidates: list[list[int]]
) -> tuple[int, int]:
    """The (height, width) candidate keeping most of the image, then wasting least (anyres)."""
    best: tuple[int, int] = (candidates[0][0], candidates[0][1])
    best_effective, best_waste = -1, math.inf
    for candidate_height, candidate_width in candidates:
        scale = min(candidate_width / width, candidate_height / height)
        scaled_width, scaled_height = int(width * scale), int(height * scale)
        effective = min(scaled_width * scaled_height, width * height)
        waste = candidate_width * candidate_height - effective
        if effective > best_effective or (effective == best_effective and waste < best_waste):
            best, best_effective, best_waste = (candidate_height, candidate_width), effective, waste
    return best


def _llava(processor: Processor, width: int, height: int, images: int) -> ImageTokens:
    side = processor["image_size"] // processor["patch_size"]
    return ImageTokens(side * side, side * side)


def _llava_next(processor: Processor, width: int, height: int, images: int) -> ImageTokens:
    side = processor["image_size"] // processor["patch_size"]
    grid_height, grid_width = _select_best_resolution(width, height, processor["grid_pinpoints"])
    current_height = grid_height // processor["image_size"] * side
    current_width = grid_width // processor["image_size"] * side
    if width / height > current_width / current_height:
        new_height = int(round(height * (current_width / width), 7))
        current_height -= 2 * ((current_height - new_height) // 2)
    else:
        new_width = int(round(width * (current_height / height), 7))
        current_width -= 2 * ((current_width - new_width) // 2)
    total = side * side + current_height * current_width + current_height
    return ImageTokens(total, total)


def smart_resize(
    height: int, width: int, factor: int, min_pixels: int, max_pixels: int
) -> tuple[int, int]:
    """Qwen-VL's resize: multiples of factor, area within [min_pixels, max_pixels]."""
    resized_height = max(factor, round(height / factor) * factor)
    resized_width = max(factor, round(width / factor) * factor)
    if resized_height * resized_width > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        resized_height = max(factor, math.floor(height / beta / factor) * factor)
        resized_width = max(factor, math.floor(width / beta / factor) * factor)
    elif resized_height * resized_width < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        resized_height = math.ceil(height * beta / factor) * factor
        resized_width = math.ceil(width * beta / factor) * factor
    return resized_height, resized_width


def _qwen_grid(processor: Processor, width: int, height: int) -> tuple[int, int]:
    factor = processor["patch_size"] * processor["merge_size"]
    return smart_resize(height, width, factor, processor["min_pixels"], processor["max_pixels"])


QWEN_MAX_ASPECT_RATIO = 200
"""transformers' smart_resize refuses images more elongated than this."""


def _qwen(processor: Processor, width: int, height: int, images: int) -> ImageTokens:
    if max(width, height) / min(width, height) > QWEN_MAX_ASPECT_RATIO:
        return ImageTokens(0, 0)
    resized_height, resized_width = _qwen_grid(processor, width, height)
    patch = processor["patch_size"]
    features = (resized_height // patch) * (resized_width // patch) // processor["merge_size"] ** 2
    return ImageTokens(features, features)


def _internvl_grid(processor: Processor, width: int, height: int) -> tuple[int, int]:
    """InternVL's dynamic tiling: the (columns, rows) grid closest to the image's aspect."""
    ratios = _internvl_ratios(processor)
    aspect = width / height
    tile = processor["tile_size"]
    best, best_difference = (1, 1), math.inf
    for columns, rows in ratios:
        difference = abs(aspect - columns / rows)
        if difference < best_difference:
            best, best_difference = (columns, rows), difference
        elif difference == best_difference and width * height > 0.5 * tile * tile * columns * rows:
            best = (columns, rows)
    return best


def _internvl(processor: Processor, width: int, height: int, images: int) -> ImageTokens:
    columns, rows = _internvl_grid(processor, width, height)
    tiles = columns * rows
    if processor["use_thumbnail"] and tiles != 1:
        tiles += 1
    features = tiles * processor["tokens_per_tile"]
    return ImageTokens(features, features)


def _mllama(processor: Processor, width: int, height: int, images: int) -> ImageTokens:
    per_tile = (processor["tile_size"] // processor["patch_size"]) ** 2 + 1
    return ImageTokens(processor["max_tiles"] * per_tile, 1)


def _gemma3(processor: Processor, width: int, height: int, images: int) -> ImageTokens:
    return ImageTokens(processor["tokens_per_image"], processor["tokens_per_image"])


def _phi3v_grid(processor: Processor, width: int, height: int) -> tuple[int, int]:
    """Phi-3-vision's HD transform: the (rows, columns) of crops after resize and padding."""
    crop, limit = processor["crop_size"], processor["num_crops"]
    transposed = width < height
    if transposed:
        width, height = height, width
    ratio = width / height
    scale = 1
    while scale * math.ceil(scale / ratio) <= limit:
        scale += 1
    scale -= 1
    new_width = int(scale * crop)
    new_height = int(new_width / ratio)
    rows, columns = math.ceil(new_height / crop), new_width // crop
    return (columns, rows) if transposed else (rows, columns)


def _phi3v(processor: Processor, width: int, height: int, images: int) -> ImageTokens:
    rows, columns = _phi3v_grid(processor, width, height)
    total = (rows * columns + 1) * 144 + 1 + (rows + 1) * 12
    return ImageTokens(total, total)


def _deepseek_vl2(processor: Processor, width: int, height: int, images: int) -> ImageTokens:
    tile, side = processor["tile_size"], processor["tokens_per_side"]
    if images > 2:
        grid_height, grid_width = tile, tile
    else:
        grid_height, grid_width = _select_best_resolution(
            width, height, processor["candidate_resolutions"]
        )
    rows, columns = grid_height // tile, grid_width // tile
    total = side * (side + 1) + (rows * side) * (columns * side + 1) + 1
    return ImageTokens(total, total)


def _pixtral(processor: Processor, width: int, height: int, images: int) -> ImageTokens:
    """Pixtral (mistral_common rounds the downscale) and Mistral 3 (HF format, which floors it
    and merges 2x2 patches: its patch_size is the merged 28 pixels)."""
    patch, limit = processor["patch_size"], processor["max_image_size"]
    ratio = max(width / limit, height / limit)
    if ratio > 1:
        if processor.get("floor_downscale", False):
            width, height = math.floor(width / ratio), math.floor(height / ratio)
        else:
            width, height = round(width / ratio), round(height / ratio)
    columns, rows = (width - 1) // patch + 1, (height - 1) // patch + 1
    return ImageTokens(columns * rows, columns * rows + rows)


def _idefics3(processor: Processor, width: int, height: int, images: int) -> ImageTokens:
    longest, tile = processor["longest_edge"], processor["tile_size"]
    if width >= height:
        height, width = int(longest * height / width), longest
        height += height % 2
    else:
        width, height = int(longest * width / height), longest
        width += width % 2
    if width > tile or height > tile:
        columns, rows = math.ceil(width / tile), math.ceil(height / tile)
    else:
        columns, rows = 0, 0
    features = (columns * rows + 1) * processor["tokens_per_tile"]
    # Per tile <fake_token_around_image><row_i_col_j>; "\n" after each row; then "\n" and
    # <fake_token_around_image><global-img> ... <fake_token_around_image>. The newline closing
    # the last row and the one before the global image meet as "\n\n", one token of the
    # byte-level BPE (measured with vLLM's tokenisation, e2e/test_engine.py).
    tags = 2 * columns * rows + rows + 3 if columns else 3
    return ImageTokens(features, features + tags)


RULES: dict[str, Callable[[Processor, int, int, int], ImageTokens]] = {
    "llava": _llava,
    "llava-next": _llava_next,
    "qwen2-vl": _qwen,
    "qwen2.5-vl": _qwen,
    "qwen3-vl": _qwen,
    "internvl": _internvl,
    "mllama": _mllama,
    "gemma3": _gemma3,
    "phi3v": _phi3v,
    "deepseek-vl2": _deepseek_vl2,
    "pixtral": _pixtral,
    "mistral3": _pixtral,
    "idefics3": _idefics3,
}


QWEN_FAMILIES = ("qwen2-vl", "qwen2.5-vl", "qwen3-vl")
"""Families whose vLLM processing info states the largest item itself
(get_mm_max_tokens_per_item), instead of measuring a dummy image."""


def _processor(architecture: Architecture, limits: Processor | None) -> Processor:
    """The family's defaults under the limits; HF-format InternVL's max_patches is the same
    cap as the chat format's max_dynamic_patch."""
    merged = {**architecture.processor, **(limits or {})}
    if "max_patches" in merged:
        merged["max_dynamic_patch"] = merged.pop("max_patches")
    return merged


def image_tokens(
    architecture: Architecture,
    width: int,
    height: int,
    *,
    images_per_request: int = 1,
    limits: Processor | None = None,
) -> ImageTokens:
    """Tokens of one width x height image, under the processor limits given (if any)."""
    rule = RULES[architecture.family]
    counted = rule(_processor(architecture, limits), width, height, images_per_request)
    return ImageTokens(counted.features, counted.decoder + architecture.wrapper_tokens)


def most_features_size(architecture: Architecture, limits: Processor | None = None) -> Size:
    """vLLM's get_image_size_with_most_features for the family, as (width, height): where its
    dummy image starts before the --limit-mm-per-prompt width and height clip it."""
    processor = _processor(architecture, limits)
    family, rule = architecture.family, RULES[architecture.family]

    def most(sizes: list[Size]) -> Size:
        best, best_features = sizes[0], -1
        for width, height in sizes:
            features = rule(processor, width, height, 1).features
            if features > best_features:
                best, best_features = (width, height), features
        return best

    if family == "llava-next":
        return most([(width, height) for height, width in processor["grid_pinpoints"]])
    if family == "deepseek-vl2":
        return most([(width, height) for height, width in processor["candidate_resolutions"]])
    if family == "internvl":
        tile = processor["tile_size"]
        return most(
            [(tile * columns, tile * rows) for columns, rows in _internvl_ratios(processor)]
        )
    if family == "phi3v":
        return (50, 8000)
    if family in ("pixtral", "mistral3"):
        return (processor["max_image_size"], processor["max_image_size"])
    if family == "idefics3":
        return (processor["longest_edge"], processor["longest_edge"])
    if family in QWEN_FAMILIES:
        side = math.isqrt(processor["max_pixels"])
        return (side, side)
    side = processor.get("image_size", processor.get("tile_size", 896))
    return (side, side)


def dummy_image_size(
    architecture: Architecture, width: int, height: int, limits: Processor | None = None
) -> Size:
    """The dummy image vLLM profiles: the most-features size clipped per dimension to the
    width and height of --limit-mm-per-prompt (dummy_inputs.py _get_dummy_images)."""
    most_width, most_height = most_features_size(architecture, limits)
    return (min(most_width, width), min(most_height, height))


def profiled_item_features(
    architecture: Architecture,
    width: int,
    height: int,
    *,
    images_per_request: int = 1,
    limits: Processor | None = None,
) -> int:
    """Embeddings of the image item vLLM's budget counts (encoder_budget.py
    get_mm_max_toks_per_item): the family's own maximum where it states one, else the dummy
    image built from the rendered width and height."""
    processor = _processor(architecture, limits)
    if architecture.family in QWEN_FAMILIES:
        pixels_per_token = int(processor["patch_size"] * processor["merge_size"]) ** 2
        return int(processor["max_pixels"]) // pixels_per_token
    dummy_width, dummy_height = dummy_image_size(architecture, width, height, limits)
    rule = RULES[architecture.family]
    return rule(processor, dummy_width, dummy_height, images_per_request).features


def _internvl_ratios(processor: Processor) -> list[tuple[int, int]]:
    low, high = processor["min_dynamic_patch"], processor["max_dynamic_patch"]
    ratios = {
        (columns, rows)
        for count in range(low, high + 1)
        for columns in range(1, count + 1)
        for rows in range(1, count + 1)
        if low <= columns * rows <= high
    }
    return sorted(ratios, key=lambda ratio: ratio[0] * ratio[1])


def _aspect_anchors(family: str, processor: Processor) -> list[Size]:
    """(width, height) shapes at which the family's token count can peak: its grid choices."""
    if family == "llava-next":
        return [(width, height) for height, width in processor["grid_pinpoints"]]
    if family == "deepseek-vl2":
        return [(width, height) for height, width in processor["candidate_resolutions"]]
    if family == "internvl":
        tile = processor["tile_size"]
        return [(tile * columns, tile * rows) for columns, rows in _internvl_ratios(processor)]
    if family == "phi3v":
        crop, crops = processor["crop_size"], processor["num_crops"]
        return [
            (crop * columns, crop * rows)
            for columns in range(1, crops + 1)
            for rows in range(1, crops + 1)
            if columns * rows <= crops
        ]
    return []


RATIO_SEARCH_LIMIT = 16
"""Aspect ratios a:b with a, b up to this are tried at their largest size inside the box."""


def _candidates(family: str, processor: Processor, width: int, height: int) -> set[Size]:
    """Images inside the width x height box that can take the most tokens: the box itself,
    every family anchor, every small-integer aspect ratio and thin strips (which Qwen-VL's
    min_pixels upscales), each clipped to the box and scaled to the largest size of its aspect
    that fits, with one-pixel neighbours."""
    strips = [2**power for power in range(4, 9)] + [QWEN_MAX_ASPECT_RATIO]
    shapes = (
        _aspect_anchors(family, processor)
        + [
            (a, b)
            for a in range(1, RATIO_SEARCH_LIMIT + 1)
            for b in range(1, RATIO_SEARCH_LIMIT + 1)
        ]
        + [(1, length) for length in strips]
        + [(length, 1) for length in strips]
    )
    found: set[Size] = {(width, height)}
    for shape_width, shape_height in shapes:
        scale = min(width / shape_width, height / shape_height)
        fitted = (max(1, math.floor(shape_width * scale)), max(1, math.floor(shape_height * scale)))
        clipped = (min(shape_width, width), min(shape_height, height))
        for base_width, base_height in (fitted, clipped):
            for delta_width in (-1, 0, 1):
                for delta_height in (-1, 0, 1):
                    candidate_width = base_width + delta_width
                    candidate_height = base_height + delta_height
                    if 1 <= candidate_width <= width and 1 <= candidate_height <= height:
                        found.add((candidate_width, candidate_height))
    return found


def worst_case_image(
    architecture: Architecture,
    width: int,
    height: int,
    *,
    images_per_request: int = 1,
    limits: Processor | None = None,
) -> tuple[Size, ImageTokens]:
    """The image inside the width x height box that takes the most decoder tokens (ties: the
    most embeddings, then the largest area), and what it costs.

    Families whose count grows with both sides (LLaVA, Gemma 3, Qwen-VL, capped InternVL)
    peak at the box itself; the others peak at an aspect ratio their grid fits exactly,
    which the candidates cover (docs/sizing.md gives the argument per family)."""
    frozen = tuple(
        sorted((name, _freeze(value)) for name, value in _processor(architecture, limits).items())
    )
    size, features, decoder = _worst_case(
        architecture.family, frozen, width, height, images_per_request
    )
    return size, ImageTokens(features, decoder + architecture.wrapper_tokens)


def _freeze(value: Any) -> Any:
    """Lists (grid pinpoints, candidate resolutions) as tuples, so that they can be hashed."""
    if isinstance(value, list | tuple):
        return tuple(_freeze(item) for item in value)
    return value


@lru_cache(maxsize=4096)
def _worst_case(
    family: str, frozen: tuple[tuple[str, Any], ...], width: int, height: int, images: int
) -> tuple[Size, int, int]:
    processor, rule = dict(frozen), RULES[family]
    best_size, best = (width, height), rule(processor, width, height, images)
    for candidate in sorted(_candidates(family, processor, width, height)):
        counted = rule(processor, candidate[0], candidate[1], images)
        rank = (counted.decoder, counted.features, candidate[0] * candidate[1])
        if rank > (best.decoder, best.features, best_size[0] * best_size[1]):
            best_size, best = candidate, counted
    return best_size, best.features, best.decoder


def processor_limits(architecture: Architecture, width: int, height: int) -> dict[str, int]:
    """--mm-processor-kwargs that cap processing at the declared image size.

    Images of the declared size keep exactly the tokens they get by default; only the largest
    item the profiler builds shrinks, and no image inside the box can exceed the cap. The
    kwarg is the one the serving class reads: max_dynamic_patch for the chat-format InternVL
    (internvl.py), max_patches for the HF-format InternVLForConditionalGeneration
    (interns1.py). Families whose processors have no such knob get none."""
    processor = architecture.processor
    if architecture.family in QWEN_FAMILIES:
        resized_height, resized_width = _qwen_grid(processor, width, height)
        return {"max_pixels": resized_height * resized_width}
    if architecture.family == "internvl":
        columns, rows = _internvl_grid(processor, width, height)
        if architecture.vllm_architecture == "InternVLForConditionalGeneration":
            return {"max_patches": columns * rows}
        return {"max_dynamic_patch": columns * rows}
    return {}


def video_tokens(
    architecture: Architecture,
    width: int,
    height: int,
    frames: int,
    *,
    limits: Processor | None = None,
) -> ImageTokens:
    """Tokens of one video of `frames` frames at width x height, for families that take video."""
    processor = _processor(architecture, limits)
    if architecture.family in QWEN_FAMILIES:
        per_frame = _qwen(processor, width, height, 1).features
        features = math.ceil(frames / processor["temporal_patch_size"]) * per_frame
        return ImageTokens(features, features + architecture.wrapper_tokens)
    if architecture.family == "internvl":
        features = frames * processor["tokens_per_tile"]
        return ImageTokens(features, features + frames * architecture.wrapper_tokens)
    raise ValueError(f"the {architecture.family} family takes no video")
