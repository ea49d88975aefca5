"""Architecture facts read from a Hugging Face config.json.

Multimodal configs nest the language model under text_config (LLaVA, Gemma 3, Mllama),
llm_config (InternVL) or language_config (DeepSeek-VL2), or keep it at the top level (Qwen2-VL);
the vision tower sits under vision_config. Only standard fields are read; absent ones stay absent.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

TEXT_SECTIONS = ("text_config", "llm_config", "language_config")

TEXT_FIELDS = {
    "num_hidden_layers": "num_layers",
    "hidden_size": "hidden_size",
    "intermediate_size": "intermediate_size",
    "num_attention_heads": "num_attention_heads",
    "num_key_value_heads": "num_key_value_heads",
    "head_dim": "head_dim",
    "vocab_size": "vocab_size",
    "max_position_embeddings": "max_position_embeddings",
    "kv_lora_rank": "kv_lora_rank",
    "qk_rope_head_dim": "qk_rope_head_dim",
    "num_experts": "num_experts",
    "num_local_experts": "num_experts",
    "n_routed_experts": "num_experts",
    "moe_intermediate_size": "moe_intermediate_size",
    "n_shared_experts": "shared_experts",
}

QUANTIZATION_METHODS = {"awq": "awq", "gptq": "gptq", "fp8": "fp8"}


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _positive_int(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        return None
    return int(value)


def _text_section(config: Mapping[str, Any]) -> dict[str, Any]:
    """Top-level fields completed by the nested language-model section, which wins."""
    merged = dict(config)
    for section in TEXT_SECTIONS:
        merged.update(_mapping(config.get(section)))
    return merged


def _global_layers(text: Mapping[str, Any], num_layers: int | None) -> int | None:
    layer_types = text.get("layer_types")
    if isinstance(layer_types, list) and layer_types:
        return sum(1 for kind in layer_types if kind == "full_attention")
    pattern = _positive_int(text.get("sliding_window_pattern"))
    if pattern is not None and num_layers is not None:
        return num_layers // pattern
    return None


def _vision_tower(vision: Mapping[str, Any]) -> dict[str, float]:
    hidden = _positive_int(vision.get("hidden_size")) or _positive_int(vision.get("embed_dim"))
    intermediate = _positive_int(vision.get("intermediate_size"))
    mlp_ratio = vision.get("mlp_ratio")
    if intermediate is None and hidden is not None and isinstance(mlp_ratio, int | float):
        intermediate = int(hidden * mlp_ratio)
    layers = _positive_int(vision.get("num_hidden_layers")) or _positive_int(vision.get("depth"))
    merge = _positive_int(vision.get("spatial_merge_size"))
    tower = {
        "hidden_size": hidden,
        "intermediate_size": intermediate,
        "num_layers": layers,
        "patches_per_token": float(merge * merge) if merge else None,
    }
    return {key: value for key, value in tower.items() if value is not None}


def parse_hf_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The architecture facts a config.json states, keyed like the catalog's model fields.

    Keys that may appear: architecture, the TEXT_FIELDS values, tie_word_embeddings,
    sliding_window, global_layers, checkpoint_quantization and vision_tower (a dict with
    hidden_size, intermediate_size, num_layers and, from spatial_merge_size, patches_per_token).
    Mixture-of-experts configs add num_experts, moe_intermediate_size and shared_experts."""
    facts: dict[str, Any] = {}
    architectures = config.get("architectures")
    if isinstance(architectures, list) and architectures and isinstance(architectures[0], str):
        facts["architecture"] = architectures[0]
    text = _text_section(config)
    for source, target in TEXT_FIELDS.items():
        value = _positive_int(text.get(source))
        if value is not None:
            facts[target] = value
    tie = text.get("tie_word_embeddings", config.get("tie_word_embeddings"))
    if isinstance(tie, bool):
        facts["tie_word_embeddings"] = tie
    sliding_window = _positive_int(text.get("sliding_window"))
    global_layers = _global_layers(text, facts.get("num_layers"))
    if sliding_window is not None and global_layers is not None:
        facts["sliding_window"] = sliding_window
        facts["global_layers"] = global_layers
    method = _mapping(config.get("quantization_config") or text.get("quantization_config")).get(
        "quant_method"
    )
    if isinstance(method, str) and method.lower() in QUANTIZATION_METHODS:
        facts["checkpoint_quantization"] = QUANTIZATION_METHODS[method.lower()]
    tower = _vision_tower(_mapping(config.get("vision_config")))
    if tower:
        facts["vision_tower"] = tower
    return facts
