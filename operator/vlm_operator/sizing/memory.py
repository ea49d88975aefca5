"""vLLM's start-up memory accounting, per GPU, for one candidate (research memory-model.md, A).

budget = total memory CUDA reports x gpu_memory_utilization. From it vLLM takes the weights of
its rank, the non-torch memory that appeared since its baseline snapshot, the peak of the profile
run (decoder over max_num_batched_tokens, vision encoder over the largest multimodal item it
profiles, plus the encoder cache) and, since 0.21, the CUDA graphs it will capture. What is left
becomes KV cache blocks of 16 tokens.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from vlm_operator.catalog.architectures import Architecture
from vlm_operator.catalog.engine import (
    KV_BLOCK_SIZE,
    MAX_CUDA_GRAPH_CAPTURE_SIZE,
    MAX_CUDA_GRAPH_CAPTURE_SIZE_BLACKWELL,
)
from vlm_operator.catalog.gpus import GpuModel

GIB = 1024**3

WEIGHT_BYTES_PER_PARAMETER = {"bf16": 2.0, "fp16": 2.0, "fp8": 1.0, "awq": 0.52, "gptq": 0.52}
"""Bytes per decoder Linear parameter (Table D). int4 with group 128 carries fp16 scales and
packed zero points: 0.5 + 2/128 + 0.5/128 = 0.52. Embeddings, lm_head and the vision tower
stay 16-bit under every quantization."""

SIXTEEN_BIT = 2
WEIGHT_MARGIN = 0.02
"""Weights land within 3% of vLLM's "Model loading took" figures; 2% on top covers buffers
that are not sharded (rotary caches, norms, replicated projector pieces)."""

VOCAB_PADDING = 64
"""vLLM pads the vocabulary of its parallel embedding and lm_head to a multiple of 64."""

LOGITS_BYTES = 4
"""The sampler's profile run holds fp32 logits over the full vocabulary."""

NON_TORCH_BASE_GIB = 0.25
"""Non-torch memory that appears after vLLM's baseline snapshot on one GPU (0.22-0.23 GiB
measured, Table G)."""

NON_TORCH_PER_TP_DOUBLING_GIB = 0.35
"""NCCL and custom all-reduce buffers allocated lazily, per doubling of tensor parallelism."""

CUDA_CONTEXT_GIB = 0.61
"""CUDA context and cuBLAS handles, taken before the snapshot: they must fit in the memory
outside the budget, or vLLM refuses to start (measured on H100/H200)."""

NCCL_COMMUNICATOR_GIB = 0.5
"""Communicators set up before the snapshot when tensor parallelism is on (estimate)."""

CUDA_GRAPH_BASE_GIB = 0.25
CUDA_GRAPH_GIB_PER_CAPTURE_SIZE = 0.00125
"""CUDA graph pool: calibrated on the 0.73-0.89 GiB measured with a 512 capture size (Table G)."""

CUDA_GRAPH_TP_GIB = 0.1
"""Graph buffers the custom all-reduce registers under tensor parallelism (estimate)."""


@dataclass(frozen=True)
class KvLayout:
    """KV cache bytes per token on one rank, split by how the cache grows with the request."""

    full_bytes_per_token: int
    """Layers whose cache grows with the whole request (full attention, MLA)."""
    window_bytes_per_token: int = 0
    """Sliding-window layers, which keep at most window_tokens per request."""
    window_tokens: int = 0
    cross_bytes_per_state: int = 0
    """Cross-attention layers, which keep the vision states of each image instead of tokens."""

    @property
    def bytes_per_token(self) -> int:
        """All layers, as if every layer kept the whole request (vLLM's page size / block)."""
        return self.full_bytes_per_token + self.window_bytes_per_token

    def request_bytes(self, tokens: int, cross_states: int = 0) -> int:
        """Cache one request of `tokens` tokens takes, in whole blocks."""
        blocks = math.ceil(tokens / KV_BLOCK_SIZE)
        total = blocks * KV_BLOCK_SIZE * self.full_bytes_per_token
        if self.window_bytes_per_token:
            window_blocks = math.ceil(min(self.window_tokens, tokens) / KV_BLOCK_SIZE) + 1
            total += min(window_blocks, blocks) * KV_BLOCK_SIZE * self.window_bytes_per_token
        return total + cross_states * self.cross_bytes_per_state


def kv_heads_per_rank(architecture: Architecture, tensor_parallel_size: int) -> int:
    """vLLM's max(1, kv_heads // tp): heads are replicated once tp exceeds them."""
    return max(1, architecture.num_key_value_heads // tensor_parallel_size)


def kv_layout(
    architecture: Architecture,
    tensor_parallel_size: int,
    kv_dtype_bytes: int,
    max_num_batched_tokens: int,
) -> KvLayout:
    """KV bytes per token per rank for the model's attention kind."""
    if architecture.attention == "multi-head-latent":
        latent = (architecture.kv_lora_rank or 0) + (architecture.qk_rope_head_dim or 0)
        return KvLayout(architecture.num_layers * latent * kv_dtype_bytes)
    per_layer = (
        2
        * kv_heads_per_rank(architecture, tensor_parallel_size)
        * architecture.head_dim
        * kv_dtype_bytes
    )
    if architecture.attention == "sliding-window-mix":
        global_layers = architecture.global_layers or 0
        window = architecture.sliding_window or 0
        return KvLayout(
            full_bytes_per_token=global_layers * per_layer,
            window_bytes_per_token=(architecture.num_layers - global_layers) * per_layer,
            window_tokens=window - 1 + max_num_batched_tokens,
        )
    return KvLayout(
        full_bytes_per_token=architecture.self_attention_layers * per_layer,
        cross_bytes_per_state=architecture.cross_attention_layers * per_layer,
    )


@dataclass(frozen=True)
class Weights:
    """Weight bytes held by one rank."""

    total: int
    vision: int


def weights_per_rank(
    architecture: Architecture, precision: str, tensor_parallel_size: int
) -> Weights:
    """Weights of one rank: Linear layers at the precision's width, embeddings, lm_head and
    the vision tower at 16 bits, everything sharded 1/tp, the vocabulary padded."""
    hidden, vocab = architecture.hidden_size, architecture.vocab_size
    embedding_copies = 1 if architecture.tie_word_embeddings else 2
    linear = architecture.parameters - architecture.vision_parameters
    linear -= embedding_copies * vocab * hidden
    padded_vocab = math.ceil(vocab / VOCAB_PADDING) * VOCAB_PADDING
    embedding_rows = math.ceil(padded_vocab / tensor_parallel_size)
    embeddings = embedding_copies * embedding_rows * hidden * SIXTEEN_BIT
    linear_bytes = linear * WEIGHT_BYTES_PER_PARAMETER[precision] / tensor_parallel_size
    vision = architecture.vision_parameters * SIXTEEN_BIT / tensor_parallel_size
    scale = 1 + WEIGHT_MARGIN
    return Weights(
        total=int((linear_bytes + vision + embeddings) * scale), vision=int(vision * scale)
    )


def non_torch_overhead_bytes(tensor_parallel_size: int) -> int:
    """Non-torch memory counted in the budget; grows with tensor parallelism."""
    doublings = math.log2(tensor_parallel_size) if tensor_parallel_size > 1 else 0.0
    return int((NON_TORCH_BASE_GIB + NON_TORCH_PER_TP_DOUBLING_GIB * doublings) * GIB)


def outside_budget_bytes(tensor_parallel_size: int) -> int:
    """Memory vLLM needs outside its budget before the snapshot: CUDA context, communicators."""
    nccl = NCCL_COMMUNICATOR_GIB if tensor_parallel_size > 1 else 0.0
    return int((CUDA_CONTEXT_GIB + nccl) * GIB)


def cuda_graph_bytes(gpu: GpuModel, max_num_seqs: int, tensor_parallel_size: int) -> int:
    """CUDA graph memory the pinned vLLM profiles into the budget."""
    ceiling = (
        MAX_CUDA_GRAPH_CAPTURE_SIZE_BLACKWELL
        if gpu.compute_capability[0] == 10
        else MAX_CUDA_GRAPH_CAPTURE_SIZE
    )
    capture_size = min(2 * max_num_seqs, ceiling)
    gib = CUDA_GRAPH_BASE_GIB + CUDA_GRAPH_GIB_PER_CAPTURE_SIZE * capture_size
    if tensor_parallel_size > 1:
        gib += CUDA_GRAPH_TP_GIB
    return int(gib * GIB)


@dataclass(frozen=True)
class ProfileRun:
    """What vLLM's profile run pushes through the model."""

    max_num_batched_tokens: int
    max_num_seqs: int
    vision_tokens: int
    """Vision embeddings of the dummy multimodal batch (0 when multimodal input is off): items
    per batch x the profiled item's embeddings (encoder_budget.py MultiModalBudget)."""
    encoder_cache_tokens: int
    """Embeddings the encoder cache is sized for."""


def profile_run(
    max_num_batched_tokens: int,
    max_num_seqs: int,
    max_model_len: int,
    item_features: int,
    items_per_prompt: int,
) -> ProfileRun:
    """The dummy batch vLLM profiles (encoder budget rules of section A.3)."""
    if item_features <= 0 or items_per_prompt <= 0:
        return ProfileRun(max_num_batched_tokens, max_num_seqs, 0, 0)
    encoder_budget = max(max_num_batched_tokens, item_features)
    per_prompt = max(1, min(items_per_prompt, max_model_len // item_features))
    items = max(1, min(encoder_budget // item_features, max_num_seqs * per_prompt))
    return ProfileRun(max_num_batched_tokens, max_num_seqs, items * item_features, encoder_budget)


def activation_bytes(
    architecture: Architecture, tensor_parallel_size: int, profile: ProfileRun
) -> int:
    """Peak of the profile run (gpu_model_runner.py profile_run): the vision encoder's forward
    over the dummy items, or afterwards the decoder's forward over max_num_batched_tokens and
    the sampler's logits while the encoder outputs are still held, whichever is larger.

    The encoder's working set is per patch at its real count (embeddings x patches merged into
    each): the MLP's gated intermediate, sharded over tp, plus q, k, v, the attention output and
    the residual stream at the tower's width (flash attention keeps no patch x patch matrix)."""
    tokens = profile.max_num_batched_tokens
    hidden = architecture.hidden_size
    decoder = (
        tokens
        * (3 * architecture.intermediate_size // tensor_parallel_size + 2 * hidden)
        * SIXTEEN_BIT
    )
    decoder += min(profile.max_num_seqs, tokens) * architecture.vocab_size * LOGITS_BYTES
    tower = architecture.vision_tower
    per_patch = (3 * tower.intermediate_size // tensor_parallel_size + 6 * tower.hidden_size) * (
        SIXTEEN_BIT
    )
    encoder = int(profile.vision_tokens * tower.patches_per_token * per_patch)
    encoder_outputs = profile.vision_tokens * hidden * SIXTEEN_BIT
    return max(encoder, decoder + encoder_outputs)
