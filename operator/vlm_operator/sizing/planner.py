"""The planner: enumerate GPU product x precision x tensor parallel size, keep what fits, pick.

Pure and deterministic: the same spec, offers and config.json always give the same plan.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from vlm_operator.api.constants import Reason
from vlm_operator.api.v1alpha1 import (
    MemoryBreakdown,
    PlanStatus,
    RejectedCandidate,
    VisionModelSpec,
)
from vlm_operator.catalog.architectures import (
    Architecture,
    UnknownArchitectureError,
    resolve_architecture,
)
from vlm_operator.catalog.engine import (
    DEFAULT_GPU_MEMORY_UTILIZATION,
    KV_BLOCK_SIZE,
    VLLM_VERSION,
)
from vlm_operator.catalog.gpus import (
    MIN_COMPUTE_CAPABILITY,
    GpuModel,
    GpuOffer,
    find_gpu,
    gpu_catalog,
    gpu_for_offer,
)
from vlm_operator.sizing.engine_args import EngineSettings, engine_arguments
from vlm_operator.sizing.image_tokens import (
    image_tokens,
    processor_limits,
    profiled_item_features,
    video_tokens,
    worst_case_image,
)
from vlm_operator.sizing.memory import (
    GIB,
    KvLayout,
    activation_bytes,
    cuda_graph_bytes,
    kv_layout,
    non_torch_overhead_bytes,
    outside_budget_bytes,
    profile_run,
    weights_per_rank,
)

PRECISION_RANK = {"bf16": 3, "fp16": 3, "fp8": 2, "awq": 1, "gptq": 1}
"""Higher is preferred: 16-bit over fp8 over int4."""

TENSOR_PARALLEL_CHOICES = (1, 2, 4, 8, 16)
CONTEXT_ROUNDING = 256
MAX_REJECTED = 256
FP8_KV_CACHE_CAPABILITY = (8, 9)
"""An fp8 KV cache needs fp8 arithmetic in the attention kernels: Ada, Hopper and newer."""
FP8_WEIGHT_ONLY_CAPABILITY = (8, 0)
"""Ampere runs fp8 checkpoints as weight-only fp8 (Marlin), without fp8 compute."""


class PlanningError(Exception):
    """Planning stops before any candidate: the spec or the model cannot be planned at all."""

    def __init__(self, stall_reason: Reason, message: str) -> None:
        super().__init__(message)
        self.stall_reason = stall_reason
        self.message = message


@dataclass(frozen=True)
class Demand:
    """What one replica must serve, whatever the GPU."""

    max_model_len: int
    max_num_seqs: int
    request_tokens: int
    concurrent_requests: int
    tokens_per_image: int
    """Decoder tokens of the costliest image inside the declared box."""
    tokens_per_declared_image: int
    """Decoder tokens of an image of exactly the declared size."""
    images_per_request: int
    image_width: int
    image_height: int
    """The declared box."""
    worst_image_width: int
    worst_image_height: int
    """The costliest image inside the box: the dummy size rendered for vLLM's profile."""
    videos_per_request: int
    video_frames: int
    item_features: int
    """Vision embeddings of the multimodal item vLLM's budget counts (the dummy it builds)."""
    admitted_features: int
    """Embeddings of the largest item a request may carry: the encoder cache must hold it."""
    items_per_prompt: int
    cross_states_per_request: int
    gpu_memory_utilization: float
    kv_cache_dtype: str
    processor_kwargs: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Candidate:
    """One way to run a replica."""

    gpu: GpuModel
    precision: str
    tensor_parallel_size: int
    max_gpus_per_node: int | None = None
    """From the cluster's offers; None without cluster knowledge."""
    free_gpus_per_node: int | None = None
    """Most unrequested GPUs on one node of the product; None when not counted."""

    @property
    def cost(self) -> float:
        """Relative price of one replica: the product's cost per GPU times its GPUs."""
        return self.gpu.relative_cost * self.tensor_parallel_size

    @property
    def has_room(self) -> bool:
        """Whether a node of the product has the GPUs of one replica free (or nobody knows)."""
        free = self.free_gpus_per_node
        return free is None or free >= self.tensor_parallel_size

    @property
    def label(self) -> str:
        """The candidate as shown to users, e.g. NVIDIA-L40S/bf16/tp2."""
        return f"{self.gpu.product}/{self.precision}/tp{self.tensor_parallel_size}"


@dataclass(frozen=True)
class Figures:
    """Per-GPU memory of one candidate, in bytes, and what the KV cache holds."""

    weights: int
    vision: int
    activation: int
    cuda_graphs: int
    overhead: int
    kv_cache: int
    budget: int
    kv_cache_tokens: int
    max_num_batched_tokens: int
    encoder_cache_tokens: int = 0


@dataclass(frozen=True)
class Evaluation:
    """A candidate and its verdict. An empty problem means it fits."""

    candidate: Candidate
    figures: Figures | None
    problem: str = ""
    kind: str = ""
    """Why it was refused: "constraint" (vLLM or the GPU cannot run it), "memory" (it does not
    fit) or "nodes" (it fits, but no schedulable node has that many GPUs)."""

    @property
    def feasible(self) -> bool:
        """Whether the candidate fits."""
        return not self.problem


def _gib(value: int) -> float:
    return round(value / GIB, 2)


@dataclass(frozen=True)
class Plan:
    """The planner's answer for one VisionModel."""

    feasible: bool
    reason: str
    stall_reason: str | None
    gpu_product: str
    precision: str
    tensor_parallel_size: int
    gpus_per_replica: int
    max_model_len: int
    max_num_seqs: int
    gpu_memory_utilization: float
    tokens_per_image: int
    kv_cache_tokens: int
    weights_gib: float
    vision_gib: float
    activation_gib: float
    cuda_graphs_gib: float
    overhead_gib: float
    kv_cache_gib: float
    budget_gib: float
    engine_args: list[str] = field(default_factory=list)
    rejected: tuple[tuple[str, str], ...] = ()
    tokens_per_declared_image: int = 0
    worst_case_image: str = ""
    max_num_batched_tokens: int = 0
    encoder_cache_tokens: int = 0
    placement: str = ""

    def to_status(self) -> PlanStatus:
        """The plan as status.plan."""
        return PlanStatus(
            feasible=self.feasible,
            reason=self.reason,
            gpu_product=self.gpu_product,
            precision=self.precision,
            tensor_parallel_size=self.tensor_parallel_size,
            gpus_per_replica=self.gpus_per_replica,
            max_model_len=self.max_model_len,
            max_num_seqs=self.max_num_seqs,
            gpu_memory_utilization=self.gpu_memory_utilization,
            tokens_per_image=self.tokens_per_image,
            tokens_per_declared_image=self.tokens_per_declared_image,
            worst_case_image=self.worst_case_image,
            max_num_batched_tokens=self.max_num_batched_tokens,
            encoder_cache_tokens=self.encoder_cache_tokens,
            placement=self.placement,
            kv_cache_tokens=self.kv_cache_tokens,
            memory_gib=MemoryBreakdown(
                weights=self.weights_gib,
                vision=self.vision_gib,
                activation=self.activation_gib,
                cuda_graphs=self.cuda_graphs_gib,
                overhead=self.overhead_gib,
                kv_cache=self.kv_cache_gib,
                budget=self.budget_gib,
            ),
            engine_args=list(self.engine_args),
            rejected=[
                RejectedCandidate(candidate=candidate, reason=reason)
                for candidate, reason in self.rejected
            ],
        )


def refused_plan(stall_reason: Reason, message: str) -> Plan:
    """A plan with no candidate at all: only why nothing could be planned."""
    return Plan(
        feasible=False,
        reason=message,
        stall_reason=stall_reason,
        gpu_product="",
        precision="",
        tensor_parallel_size=0,
        gpus_per_replica=0,
        max_model_len=0,
        max_num_seqs=0,
        gpu_memory_utilization=0.0,
        tokens_per_image=0,
        kv_cache_tokens=0,
        weights_gib=0.0,
        vision_gib=0.0,
        activation_gib=0.0,
        cuda_graphs_gib=0.0,
        overhead_gib=0.0,
        kv_cache_gib=0.0,
        budget_gib=0.0,
    )


def derive_demand(architecture: Architecture, spec: VisionModelSpec) -> Demand:
    """Context length, batch and profile sizes from the workload and the engine pins."""
    workload, engine = spec.workload, spec.engine
    images, videos = workload.max_images_per_request, workload.max_videos_per_request
    width, height = workload.max_image_size.width, workload.max_image_size.height
    if videos and not architecture.supports_video:
        raise PlanningError(
            Reason.INVALID_SPEC,
            f"{architecture.model_id} takes no video: set workload.maxVideosPerRequest to 0",
        )
    limits = processor_limits(architecture, width, height) if images or videos else {}
    declared = image_tokens(architecture, width, height, images_per_request=images, limits=limits)
    (worst_width, worst_height), image = worst_case_image(
        architecture, width, height, images_per_request=images, limits=limits
    )
    item_features, items_per_prompt, admitted = 0, 0, 0
    if images:
        item_features = profiled_item_features(
            architecture, worst_width, worst_height, images_per_request=images, limits=limits
        )
        items_per_prompt, admitted = images, image.features
    video_decoder = 0
    if videos:
        video = video_tokens(architecture, width, height, workload.max_video_frames, limits=limits)
        video_decoder = video.decoder
        admitted = max(admitted, video.features)
        if video.features >= item_features:
            item_features, items_per_prompt = video.features, videos
    request_tokens = (
        workload.prompt_tokens
        + images * image.decoder
        + videos * video_decoder
        + workload.output_tokens
    )
    context = architecture.max_position_embeddings
    if engine.max_model_len is not None:
        if engine.max_model_len > context:
            raise PlanningError(
                Reason.INVALID_SPEC,
                f"engine.maxModelLen {engine.max_model_len} exceeds the {context}-token context "
                f"of {architecture.model_id}",
            )
        max_model_len = engine.max_model_len
    elif request_tokens > context:
        raise PlanningError(
            Reason.INVALID_SPEC,
            f"a request of {request_tokens} tokens ({workload.prompt_tokens} prompt, {images} "
            f"image(s) of {image.decoder}, {workload.output_tokens} output) exceeds the "
            f"{context}-token context of {architecture.model_id}: send fewer or smaller images "
            "or shorter prompts",
        )
    else:
        max_model_len = min(
            math.ceil(request_tokens / CONTEXT_ROUNDING) * CONTEXT_ROUNDING, context
        )
    max_num_seqs = engine.max_num_seqs or workload.concurrency
    utilization = (
        engine.gpu_memory_utilization_percent / 100
        if engine.gpu_memory_utilization_percent is not None
        else DEFAULT_GPU_MEMORY_UTILIZATION
    )
    cross_states = images * image.features if architecture.cross_attention_layers else 0
    return Demand(
        max_model_len=max_model_len,
        max_num_seqs=max_num_seqs,
        request_tokens=min(request_tokens, max_model_len),
        concurrent_requests=min(workload.concurrency, max_num_seqs),
        tokens_per_image=image.decoder,
        tokens_per_declared_image=declared.decoder,
        images_per_request=images,
        image_width=width,
        image_height=height,
        worst_image_width=worst_width,
        worst_image_height=worst_height,
        videos_per_request=videos,
        video_frames=workload.max_video_frames,
        item_features=item_features,
        admitted_features=admitted,
        items_per_prompt=items_per_prompt,
        cross_states_per_request=cross_states,
        gpu_memory_utilization=utilization,
        kv_cache_dtype=spec.hardware.kv_cache_dtype,
        processor_kwargs=limits,
    )


def default_max_num_batched_tokens(gpu: GpuModel) -> int:
    """vLLM's OpenAI-server default for this GPU (get_batch_defaults)."""
    if gpu.memory_gib >= 160:
        return 16384
    if gpu.memory_gib >= 70 and "a100" not in gpu.product.lower():
        return 8192
    return 2048


def max_num_batched_tokens(gpu: GpuModel, demand: Demand) -> int:
    """vLLM's default, raised where the encoder cache it implies would refuse an image inside
    the box: the cache is max(max_num_batched_tokens, the profiled item's embeddings)
    (encoder_cache_manager.py compute_mm_encoder_budget), and the profiled item can be smaller
    than the costliest real one when the dummy image is clipped to a thin strip."""
    default = default_max_num_batched_tokens(gpu)
    if max(default, demand.item_features) >= demand.admitted_features:
        return default
    return demand.admitted_features


def _precision_problem(precision: str, gpu: GpuModel, checkpoint: str) -> str:
    """Why this precision cannot run this checkpoint on this GPU, or ""."""
    if checkpoint in ("awq", "gptq") and precision != checkpoint:
        return f"the checkpoint is {checkpoint}-quantized: precision must be {checkpoint}"
    if precision in ("awq", "gptq") and checkpoint != precision:
        return (
            f"{precision} needs a {precision}-quantized checkpoint "
            "(spec.model.checkpointQuantization)"
        )
    if checkpoint == "fp8" and precision != "fp8":
        return "the checkpoint is fp8: precision must be fp8"
    needed = MIN_COMPUTE_CAPABILITY.get(precision)
    if precision == "fp8" and checkpoint == "fp8":
        needed = FP8_WEIGHT_ONLY_CAPABILITY
    if needed is not None and gpu.compute_capability < needed:
        advice = "; use fp16" if precision == "bf16" else ""
        return (
            f"{precision} needs compute capability {needed[0]}.{needed[1]} or newer; "
            f"{gpu.product} has {gpu.compute_capability_text}{advice}"
        )
    return ""


def _kv_dtype_problem(kv_cache_dtype: str, gpu: GpuModel) -> str:
    """Why this GPU cannot keep the KV cache in this dtype, or ""."""
    if kv_cache_dtype == "fp8" and gpu.compute_capability < FP8_KV_CACHE_CAPABILITY:
        needed = ".".join(str(part) for part in FP8_KV_CACHE_CAPABILITY)
        return (
            f"an fp8 KV cache needs compute capability {needed} or newer; {gpu.product} has "
            f"{gpu.compute_capability_text}: set hardware.kvCacheDtype to auto"
        )
    return ""


def _parallelism_problem(architecture: Architecture, tensor_parallel_size: int) -> str:
    """Why vLLM refuses this tensor parallel size for the model, or ""."""
    heads = architecture.num_attention_heads
    if heads % tensor_parallel_size:
        return f"{heads} attention heads are not divisible by tensor parallel size"
    kv_heads = architecture.num_key_value_heads
    if architecture.attention != "multi-head-latent" and (
        kv_heads % tensor_parallel_size
        if tensor_parallel_size <= kv_heads
        else tensor_parallel_size % kv_heads
    ):
        return f"{kv_heads} KV heads cannot be split or replicated evenly over tp"
    return ""


def kv_cache_tokens(layout: KvLayout, kv_bytes: int, max_model_len: int) -> int:
    """Tokens the cache holds, as vLLM logs "GPU KV cache size" (one block kept back)."""
    if kv_bytes <= 0:
        return 0
    block_bytes = KV_BLOCK_SIZE * layout.full_bytes_per_token
    if not layout.window_bytes_per_token and not layout.cross_bytes_per_state:
        return max(0, kv_bytes // block_bytes - 1) * KV_BLOCK_SIZE
    request = layout.request_bytes(max_model_len)
    return int(kv_bytes / request * max_model_len) // KV_BLOCK_SIZE * KV_BLOCK_SIZE


def evaluate(
    architecture: Architecture, demand: Demand, candidate: Candidate, checkpoint: str
) -> Evaluation:
    """Check one candidate against vLLM's constraints and its start-up memory accounting."""
    gpu, tp = candidate.gpu, candidate.tensor_parallel_size
    problem = (
        _precision_problem(candidate.precision, gpu, checkpoint)
        or _kv_dtype_problem(demand.kv_cache_dtype, gpu)
        or _parallelism_problem(architecture, tp)
    )
    if problem:
        return Evaluation(candidate, None, problem, "constraint")
    total = int(gpu.memory_gib * GIB)
    batched = max_num_batched_tokens(gpu, demand)
    weights = weights_per_rank(architecture, candidate.precision, tp)
    profile = profile_run(
        batched,
        demand.max_num_seqs,
        demand.max_model_len,
        demand.item_features,
        demand.items_per_prompt,
    )
    activation = activation_bytes(architecture, tp, profile)
    graphs = cuda_graph_bytes(gpu, demand.max_num_seqs, tp)
    overhead = non_torch_overhead_bytes(tp)
    budget = int(total * demand.gpu_memory_utilization)
    kv_bytes = budget - weights.total - activation - graphs - overhead
    layout = kv_layout(architecture, tp, 1 if demand.kv_cache_dtype == "fp8" else 2, batched)
    figures = Figures(
        weights=weights.total,
        vision=weights.vision,
        activation=activation,
        cuda_graphs=graphs,
        overhead=overhead,
        kv_cache=max(0, kv_bytes),
        budget=budget,
        kv_cache_tokens=kv_cache_tokens(layout, kv_bytes, demand.max_model_len),
        max_num_batched_tokens=batched,
        encoder_cache_tokens=profile.encoder_cache_tokens,
    )
    problem = _memory_problem(demand, layout, figures, total - budget, outside_budget_bytes(tp))
    if problem:
        return Evaluation(candidate, figures, problem, "memory")
    if candidate.max_gpus_per_node is not None and tp > candidate.max_gpus_per_node:
        return Evaluation(
            candidate,
            figures,
            f"fits, but no schedulable node has {tp} {gpu.product} GPUs "
            f"(the largest has {candidate.max_gpus_per_node})",
            "nodes",
        )
    return Evaluation(candidate, figures)


def _memory_problem(
    demand: Demand, layout: KvLayout, figures: Figures, headroom: int, outside_needed: int
) -> str:
    """Why vLLM would fail to start or could not hold the workload, or ""."""
    if headroom < outside_needed:
        return (
            f"gpu memory utilization {demand.gpu_memory_utilization:.2f} leaves "
            f"{_gib(headroom)} GiB outside vLLM's budget, less than the {_gib(outside_needed)} "
            "GiB of CUDA context and communicators: vLLM would refuse to start"
        )
    used = figures.weights + figures.activation + figures.cuda_graphs + figures.overhead
    if used >= figures.budget:
        return (
            f"weights {_gib(figures.weights)} + activation {_gib(figures.activation)} + CUDA "
            f"graphs {_gib(figures.cuda_graphs)} + overhead {_gib(figures.overhead)} GiB "
            f"exceed the {_gib(figures.budget)} GiB budget: no memory left for the KV cache"
        )
    one_request = layout.request_bytes(demand.max_model_len, demand.cross_states_per_request)
    if one_request > figures.kv_cache:
        return (
            f"KV cache of {_gib(figures.kv_cache)} GiB holds {figures.kv_cache_tokens} tokens, "
            f"less than one {demand.max_model_len}-token request"
        )
    per_request = layout.request_bytes(demand.request_tokens, demand.cross_states_per_request)
    held = figures.kv_cache // per_request
    if held < demand.concurrent_requests:
        return (
            f"KV cache of {_gib(figures.kv_cache)} GiB holds {held} concurrent "
            f"{demand.request_tokens}-token requests, fewer than the "
            f"{demand.concurrent_requests} declared"
        )
    return ""


def _preference(evaluation: Evaluation) -> tuple[int, float, int, int, str]:
    """Sort key: fewest GPUs per replica (tensor parallelism adds all-reduce traffic and needs
    nodes with that many GPUs free), then the cheapest replica, then higher precision, then the
    larger KV cache, then by name."""
    candidate = evaluation.candidate
    kv_tokens = evaluation.figures.kv_cache_tokens if evaluation.figures else 0
    return (
        candidate.tensor_parallel_size,
        candidate.cost,
        -PRECISION_RANK[candidate.precision],
        -kv_tokens,
        candidate.label,
    )


GpuChoice = tuple[GpuModel, int | None, int | None]
"""A GPU, the most GPUs one node of it has and the most free on one (None: unknown)."""


def _priced(gpu: GpuModel, costs: Mapping[str, float]) -> GpuModel:
    """The GPU with its configured cost, where the operator configuration sets one."""
    configured = {product.lower(): cost for product, cost in costs.items()}
    for product in gpu.products:
        if product.lower() in configured:
            return replace(gpu, relative_cost=configured[product.lower()])
    return gpu


def _gpu_choices(spec: VisionModelSpec, offers: Sequence[GpuOffer] | None) -> list[GpuChoice]:
    """GPUs to consider, with what one node of each offers."""
    wanted = spec.hardware.gpu_product
    if offers is None:
        if wanted == "auto":
            return [(gpu, None, None) for gpu in gpu_catalog()]
        gpu = find_gpu(wanted)
        if gpu is None:
            known = ", ".join(product for gpu in gpu_catalog() for product in gpu.products)
            raise PlanningError(
                Reason.INVALID_SPEC,
                f"GPU product {wanted} is not in the GPU catalog and no cluster describes it; "
                f"known products: {known}",
            )
        return [(gpu, None, None)]
    offered: list[GpuChoice] = [
        (gpu, offer.max_gpus_per_node, offer.max_free_gpus_per_node)
        for offer in offers
        if (gpu := gpu_for_offer(offer)) is not None
    ]
    if wanted != "auto":
        offered = [choice for choice in offered if choice[0].product.lower() == wanted.lower()]
    if not offered:
        products = ", ".join(offer.product for offer in offers) or "none"
        target = "GPU nodes" if wanted == "auto" else f"nodes with {wanted}"
        raise PlanningError(
            Reason.NO_MATCHING_GPU_NODES,
            f"no schedulable {target} with a known GPU product; the cluster offers: {products}",
        )
    return sorted(offered, key=lambda choice: choice[0].product)


def _precision_choices(spec: VisionModelSpec, gpu: GpuModel, checkpoint: str) -> list[str]:
    if spec.hardware.precision != "auto":
        return [spec.hardware.precision]
    if checkpoint != "none":
        return [checkpoint]
    return ["bf16" if gpu.supports_bf16 else "fp16", "fp8"]


def _tensor_parallel_choices(spec: VisionModelSpec) -> list[int]:
    if spec.hardware.tensor_parallel_size is not None:
        return [spec.hardware.tensor_parallel_size]
    limit = spec.hardware.max_gpus_per_replica
    return [size for size in TENSOR_PARALLEL_CHOICES if size <= limit]


def checkpoint_of(spec: VisionModelSpec, architecture: Architecture) -> str:
    """The checkpoint's quantization: as declared, else as its config.json states."""
    declared = spec.model.checkpoint_quantization
    return declared if declared != "none" else architecture.checkpoint_quantization or "none"


def candidates_for(
    spec: VisionModelSpec,
    architecture: Architecture,
    offers: Sequence[GpuOffer] | None,
    costs: Mapping[str, float] | None = None,
) -> list[Candidate]:
    """Every candidate the spec allows, in a fixed order, priced by `costs` where given."""
    checkpoint = checkpoint_of(spec, architecture)
    return [
        Candidate(_priced(gpu, costs or {}), precision, tp, per_node, free)
        for gpu, per_node, free in _gpu_choices(spec, offers)
        for precision in _precision_choices(spec, gpu, checkpoint)
        for tp in _tensor_parallel_choices(spec)
    ]


def _settings(
    spec: VisionModelSpec, architecture: Architecture, demand: Demand, evaluation: Evaluation
) -> EngineSettings:
    candidate = evaluation.candidate
    checkpoint = checkpoint_of(spec, architecture)
    figures = evaluation.figures
    return EngineSettings(
        model_id=spec.model.id,
        served_name=spec.model.served_name or spec.model.id,
        revision=spec.model.revision,
        tensor_parallel_size=candidate.tensor_parallel_size,
        max_model_len=demand.max_model_len,
        max_num_seqs=demand.max_num_seqs,
        max_num_batched_tokens=figures.max_num_batched_tokens
        if figures
        else max_num_batched_tokens(candidate.gpu, demand),
        gpu_memory_utilization=demand.gpu_memory_utilization,
        precision=candidate.precision,
        activation_dtype="bf16" if candidate.gpu.supports_bf16 else "fp16",
        online_quantization=candidate.precision == "fp8" and checkpoint != "fp8",
        kv_cache_dtype=demand.kv_cache_dtype,
        images_per_prompt=demand.images_per_request,
        image_width=demand.worst_image_width,
        image_height=demand.worst_image_height,
        video_width=demand.image_width,
        video_height=demand.image_height,
        videos_per_prompt=demand.videos_per_request,
        video_frames=demand.video_frames,
        processor_kwargs=demand.processor_kwargs,
    )


def _rejections(evaluations: Sequence[Evaluation]) -> tuple[tuple[str, str], ...]:
    refused = [(e.candidate.label, e.problem) for e in evaluations if not e.feasible]
    if len(refused) > MAX_REJECTED:
        kept = refused[: MAX_REJECTED - 1]
        return (*kept, ("...", f"{len(refused) - len(kept)} more candidates refused"))
    return tuple(refused)


def _stall_reason(evaluations: Sequence[Evaluation]) -> Reason:
    """Nodes when some candidate fits but no node is big enough, then memory, else the spec."""
    kinds = {evaluation.kind for evaluation in evaluations}
    if "nodes" in kinds:
        return Reason.NO_MATCHING_GPU_NODES
    if "memory" in kinds:
        return Reason.INSUFFICIENT_GPU_MEMORY
    return Reason.INVALID_SPEC


def _closest(evaluations: Sequence[Evaluation]) -> Evaluation:
    """The refused candidate to report: the one with the most memory left for KV cache (the
    least short of it), else the first."""
    measured = [e for e in evaluations if e.figures is not None]
    if not measured:
        return evaluations[0]
    return max(measured, key=lambda e: (_kv_room(e), -e.candidate.tensor_parallel_size))


def _kv_room(evaluation: Evaluation) -> int:
    """Budget left after everything but the KV cache; negative when already over."""
    figures = evaluation.figures
    if figures is None:
        return 0
    used = figures.weights + figures.activation + figures.cuda_graphs + figures.overhead
    return figures.budget - used


def _plan(
    spec: VisionModelSpec,
    architecture: Architecture,
    demand: Demand,
    chosen: Evaluation,
    evaluations: Sequence[Evaluation],
    reason: str,
    placement: str = "",
) -> Plan:
    figures = chosen.figures or Figures(0, 0, 0, 0, 0, 0, 0, 0, 0)
    candidate = chosen.candidate
    return Plan(
        feasible=chosen.feasible,
        reason=reason,
        stall_reason=None if chosen.feasible else _stall_reason(evaluations),
        gpu_product=candidate.gpu.product,
        precision=candidate.precision,
        tensor_parallel_size=candidate.tensor_parallel_size,
        gpus_per_replica=candidate.tensor_parallel_size,
        max_model_len=demand.max_model_len,
        max_num_seqs=demand.max_num_seqs,
        gpu_memory_utilization=demand.gpu_memory_utilization,
        tokens_per_image=demand.tokens_per_image,
        kv_cache_tokens=figures.kv_cache_tokens,
        weights_gib=_gib(figures.weights),
        vision_gib=_gib(figures.vision),
        activation_gib=_gib(figures.activation),
        cuda_graphs_gib=_gib(figures.cuda_graphs),
        overhead_gib=_gib(figures.overhead),
        kv_cache_gib=_gib(figures.kv_cache),
        budget_gib=_gib(figures.budget),
        engine_args=engine_arguments(_settings(spec, architecture, demand, chosen)),
        rejected=_rejections(evaluations),
        tokens_per_declared_image=demand.tokens_per_declared_image,
        worst_case_image=(
            f"{demand.worst_image_width}x{demand.worst_image_height}"
            if demand.images_per_request
            else ""
        ),
        max_num_batched_tokens=figures.max_num_batched_tokens,
        encoder_cache_tokens=figures.encoder_cache_tokens,
        placement=placement,
    )


def best_feasible(
    architecture: Architecture, demand: Demand, candidates: Sequence[Candidate], checkpoint: str
) -> tuple[Evaluation | None, list[Evaluation]]:
    """Evaluate every candidate; return the preferred feasible one (if any) and all verdicts."""
    evaluations = [evaluate(architecture, demand, c, checkpoint) for c in candidates]
    feasible = [e for e in evaluations if e.feasible]
    return (min(feasible, key=_preference) if feasible else None), evaluations


def _running(previous: Mapping[str, Any] | None) -> tuple[str, str, int] | None:
    """(product, precision, tp) of the plan a VisionModel already runs, from status.plan."""
    if not previous or not previous.get("feasible"):
        return None
    product, precision = previous.get("gpuProduct"), previous.get("precision")
    tp = previous.get("tensorParallelSize")
    if not isinstance(product, str) or not isinstance(precision, str) or not isinstance(tp, int):
        return None
    return product.lower(), precision, tp


def place(
    evaluations: Sequence[Evaluation], previous: Mapping[str, Any] | None = None
) -> tuple[Evaluation, str] | None:
    """The feasible candidate to run, and why: the placement already running while it still
    fits (adding or cordoning nodes must not roll a model), else the cheapest with a node that
    has a replica's GPUs free, else the cheapest, whose replicas then wait for GPUs."""
    feasible = sorted((e for e in evaluations if e.feasible), key=_preference)
    if not feasible:
        return None
    cheapest = feasible[0]
    roomy = [e for e in feasible if e.candidate.has_room]
    target = roomy[0] if roomy else cheapest
    needed = cheapest.candidate.tensor_parallel_size
    full = (
        f"{cheapest.candidate.label} is cheaper but no node of it has {needed} free "
        f"GPU{'s' if needed > 1 else ''}"
    )
    running = _running(previous)
    for evaluation in feasible:
        candidate = evaluation.candidate
        key = (candidate.gpu.product.lower(), candidate.precision, candidate.tensor_parallel_size)
        if key != running:
            continue
        if evaluation is cheapest:
            return evaluation, "cheapest feasible; already running there"
        if evaluation is target:
            return evaluation, f"already running there; {full}"
        return evaluation, (
            f"keeps {candidate.label}, where it runs, while it fits; it would move to "
            f"{target.candidate.label} (relative cost {target.candidate.cost:g} against "
            f"{candidate.cost:g}) if its hardware spec changed or this stopped fitting"
        )
    if not roomy:
        others = ", ".join(sorted({e.candidate.gpu.product for e in feasible[1:]})) or "none"
        return cheapest, (
            f"replicas wait for GPUs: no {cheapest.candidate.gpu.product} node has "
            f"{needed} free; no other feasible product ({others}) has room either"
        )
    if target is cheapest:
        return cheapest, "cheapest feasible"
    return target, f"{full}; {target.candidate.gpu.product} has room"


def plan_candidates(
    spec: VisionModelSpec,
    *,
    gpu_offers: Sequence[GpuOffer] | None = None,
    architecture_config: Mapping[str, Any] | None = None,
    gpu_costs: Mapping[str, float] | None = None,
    previous: Mapping[str, Any] | None = None,
) -> tuple[Plan, Architecture | None]:
    """Size one VisionModel: the chosen candidate, or the closest refused one and why.

    `previous` is the status.plan it runs with, if any. Also returns the resolved
    architecture (None when the model could not be resolved)."""
    try:
        architecture = resolve_model(spec, architecture_config)
        demand = derive_demand(architecture, spec)
        candidates = candidates_for(spec, architecture, gpu_offers, gpu_costs)
    except PlanningError as error:
        return refused_plan(error.stall_reason, error.message), None
    checkpoint = checkpoint_of(spec, architecture)
    _, evaluations = best_feasible(architecture, demand, candidates, checkpoint)
    placed = place(evaluations, previous)
    if placed is not None:
        chosen, placement = placed
        return _plan(spec, architecture, demand, chosen, evaluations, "", placement), architecture
    closest = _closest(evaluations)
    reason = f"no candidate fits; closest {closest.candidate.label}: {closest.problem}"
    return _plan(spec, architecture, demand, closest, evaluations, reason), architecture


def resolve_model(spec: VisionModelSpec, config: Mapping[str, Any] | None) -> Architecture:
    """The model's architecture, refused when unknown or not served by the pinned vLLM."""
    try:
        architecture = resolve_architecture(spec.model.id, spec.model.architecture, config)
    except UnknownArchitectureError as error:
        raise PlanningError(Reason.UNSUPPORTED_MODEL, str(error)) from error
    if not architecture.vllm_versions.contains(VLLM_VERSION):
        served_by = architecture.vllm_versions.describe()
        name = architecture.vllm_architecture or architecture.family
        raise PlanningError(
            Reason.UNSUPPORTED_MODEL,
            f"{architecture.model_id} ({name}) is served by {served_by}; the pinned vLLM "
            f"{VLLM_VERSION} cannot serve it",
        )
    return architecture
