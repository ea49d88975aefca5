"""When nothing fits: the smallest single changes to the spec that would.

Each change is tried on its own, through the same planner, in the order a user would rather
make them: more GPUs, a lower precision, a shorter context or fewer concurrent requests, fewer
or smaller images, another GPU product.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from vlm_operator.api.v1alpha1 import VisionModelSpec
from vlm_operator.catalog.architectures import Architecture
from vlm_operator.catalog.gpus import GpuOffer
from vlm_operator.sizing.planner import (
    TENSOR_PARALLEL_CHOICES,
    Evaluation,
    PlanningError,
    best_feasible,
    candidates_for,
    checkpoint_of,
    derive_demand,
)

MAX_SUGGESTIONS = 4
SMALLEST_IMAGE_SIDE = 224
IMAGE_SHRINK = 0.75
CONTEXT_STEP = 256


def _fit(
    spec: VisionModelSpec, architecture: Architecture, offers: Sequence[GpuOffer] | None
) -> Evaluation | None:
    """The candidate the planner would choose for this spec, or None."""
    try:
        demand = derive_demand(architecture, spec)
        candidates = candidates_for(spec, architecture, offers)
    except PlanningError:
        return None
    chosen, _ = best_feasible(architecture, demand, candidates, checkpoint_of(spec, architecture))
    return chosen


def _changed(spec: VisionModelSpec, section: str, **values: Any) -> VisionModelSpec:
    part = getattr(spec, section).model_copy(update=values)
    return spec.model_copy(update={section: part})


def _largest_fitting(low: int, high: int, fits: Callable[[int], bool]) -> int | None:
    """The largest value in [low, high] for which fits holds, assuming it is monotone."""
    if low > high or not fits(low):
        return None
    while low < high:
        middle = (low + high + 1) // 2
        if fits(middle):
            low = middle
        else:
            high = middle - 1
    return low


def _more_gpus(
    spec: VisionModelSpec, architecture: Architecture, offers: Sequence[GpuOffer] | None
) -> str | None:
    hardware = spec.hardware
    most = max(TENSOR_PARALLEL_CHOICES)
    if hardware.tensor_parallel_size is None and hardware.max_gpus_per_replica >= most:
        return None
    wider = _changed(spec, "hardware", tensor_parallel_size=None, max_gpus_per_replica=most)
    chosen = _fit(wider, architecture, offers)
    if chosen is None:
        return None
    gpus = chosen.candidate.tensor_parallel_size
    field = (
        "hardware.tensorParallelSize"
        if hardware.tensor_parallel_size is not None
        else "hardware.maxGpusPerReplica"
    )
    return f"{gpus} GPUs per replica ({chosen.candidate.label}; {field} {gpus})"


def _lower_precision(
    spec: VisionModelSpec, architecture: Architecture, offers: Sequence[GpuOffer] | None
) -> str | None:
    checkpoint = checkpoint_of(spec, architecture)
    options: list[tuple[str, VisionModelSpec]] = []
    if spec.hardware.precision in ("bf16", "fp16") and checkpoint == "none":
        options.append(("hardware.precision fp8", _changed(spec, "hardware", precision="fp8")))
    if checkpoint == "none":
        awq = _changed(spec, "model", checkpoint_quantization="awq")
        options.append(
            (
                "an AWQ int4 checkpoint with hardware.precision awq",
                _changed(awq, "hardware", precision="awq"),
            )
        )
    if spec.hardware.kv_cache_dtype == "auto":
        options.append(
            ("hardware.kvCacheDtype fp8", _changed(spec, "hardware", kv_cache_dtype="fp8"))
        )
    for text, changed in options:
        chosen = _fit(changed, architecture, offers)
        if chosen is not None:
            return f"{text} ({chosen.candidate.label})"
    return None


def _shorter_context(
    spec: VisionModelSpec, architecture: Architecture, offers: Sequence[GpuOffer] | None
) -> str | None:
    try:
        current = derive_demand(architecture, spec)
    except PlanningError:
        return None
    # A context shorter than one declared request would make vLLM refuse those requests.
    shortest_step = -(-current.request_tokens // CONTEXT_STEP)
    steps = _largest_fitting(
        shortest_step,
        current.max_model_len // CONTEXT_STEP - 1,
        lambda step: (
            _fit(_changed(spec, "engine", max_model_len=step * CONTEXT_STEP), architecture, offers)
            is not None
        ),
    )
    if steps is not None:
        return f"engine.maxModelLen {steps * CONTEXT_STEP}"
    concurrency = _largest_fitting(
        1,
        spec.workload.concurrency - 1,
        lambda value: (
            _fit(_changed(spec, "workload", concurrency=value), architecture, offers) is not None
        ),
    )
    if concurrency is not None:
        return f"workload.concurrency {concurrency}"
    return None


def _fewer_images(
    spec: VisionModelSpec, architecture: Architecture, offers: Sequence[GpuOffer] | None
) -> str | None:
    workload = spec.workload
    images = _largest_fitting(
        1,
        workload.max_images_per_request - 1,
        lambda count: (
            _fit(_changed(spec, "workload", max_images_per_request=count), architecture, offers)
            is not None
        ),
    )
    if images is not None:
        return f"workload.maxImagesPerRequest {images}"
    width, height = workload.max_image_size.width, workload.max_image_size.height
    while min(width, height) * IMAGE_SHRINK >= SMALLEST_IMAGE_SIDE:
        width, height = int(width * IMAGE_SHRINK), int(height * IMAGE_SHRINK)
        size = workload.max_image_size.model_copy(update={"width": width, "height": height})
        if _fit(_changed(spec, "workload", max_image_size=size), architecture, offers):
            return f"workload.maxImageSize {width}x{height}"
    return None


def _other_gpu(
    spec: VisionModelSpec, architecture: Architecture, offers: Sequence[GpuOffer] | None
) -> str | None:
    if spec.hardware.gpu_product == "auto":
        return None
    chosen = _fit(_changed(spec, "hardware", gpu_product="auto"), architecture, offers)
    if chosen is None:
        return None
    return f"hardware.gpuProduct {chosen.candidate.gpu.product} ({chosen.candidate.label})"


CHANGES = (_more_gpus, _lower_precision, _shorter_context, _fewer_images, _other_gpu)


def suggest_changes(
    spec: VisionModelSpec, architecture: Architecture, offers: Sequence[GpuOffer] | None
) -> list[str]:
    """Single changes that would make the spec fit, smallest first (at most MAX_SUGGESTIONS)."""
    found: list[str] = []
    for change in CHANGES:
        text = change(spec, architecture, offers)
        if text is not None:
            found.append(text)
        if len(found) == MAX_SUGGESTIONS:
            break
    return found
