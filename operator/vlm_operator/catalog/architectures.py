"""The architecture catalog, and how a model's facts are resolved from it.

A model's facts come from three layers, each completing and overriding the one before: the
catalog entry for its Hugging Face id, a parsed config.json, and the explicit fields of
spec.model.architecture.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from vlm_operator.api.v1alpha1 import ArchitectureOverrides
from vlm_operator.catalog.data_files import load_data_file
from vlm_operator.catalog.engine import VersionRange
from vlm_operator.catalog.hf_config import parse_hf_config

REQUIRED_FIELDS = (
    "family",
    "num_layers",
    "hidden_size",
    "num_attention_heads",
    "vocab_size",
    "max_position_embeddings",
)

ALWAYS_SUPPORTED = VersionRange("0.0.0")
"""Range assumed for a model described only by its family: the user vouches for it."""


class UnknownArchitectureError(Exception):
    """The model's facts are missing or contradictory; the message says what to provide."""


@dataclass(frozen=True)
class VisionTower:
    """The shape of a vision encoder, which sizes its profile-run activations."""

    hidden_size: int
    intermediate_size: int
    patches_per_token: float
    """Encoder patches behind one language-model token (4.0 for a 2x2 merge)."""


@dataclass(frozen=True)
class Architecture:
    """Everything the planner needs to know about one model."""

    model_id: str
    vllm_architecture: str | None
    family: str
    attention: str
    parameters: int
    vision_parameters: int
    num_layers: int
    hidden_size: int
    intermediate_size: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    vocab_size: int
    max_position_embeddings: int
    tie_word_embeddings: bool
    supports_video: bool
    vision_tower: VisionTower
    wrapper_tokens: int
    vllm_versions: VersionRange
    processor: Mapping[str, Any] = field(default_factory=dict, compare=False)
    checkpoint_quantization: str | None = None
    sliding_window: int | None = None
    global_layers: int | None = None
    cross_attention_layers: int = 0
    kv_lora_rank: int | None = None
    qk_rope_head_dim: int | None = None
    parameters_estimated: bool = False

    @property
    def self_attention_layers(self) -> int:
        """Decoder layers that keep per-token KV (cross-attention layers do not)."""
        return self.num_layers - self.cross_attention_layers


@cache
def _catalog() -> Mapping[str, Any]:
    data: Mapping[str, Any] = load_data_file("architectures.yaml")
    return data


def catalog_model_ids() -> tuple[str, ...]:
    """The Hugging Face ids of every model in the catalog, in catalog order."""
    return tuple(_catalog()["models"])


def family_names() -> tuple[str, ...]:
    """The image-token families the catalog knows."""
    return tuple(_catalog()["families"])


@cache
def _models_by_lower_id() -> dict[str, tuple[str, Mapping[str, Any]]]:
    return {model_id.lower(): (model_id, entry) for model_id, entry in _catalog()["models"].items()}


def _explicit_overrides(overrides: ArchitectureOverrides | None) -> dict[str, Any]:
    if overrides is None:
        return {}
    values = overrides.model_dump(by_alias=False, exclude_none=True, exclude={"config_map_ref"})
    if "supports_video" in values:
        values["video"] = values.pop("supports_video")
    return values


def _estimate_text_parameters(facts: Mapping[str, Any]) -> int:
    """Decoder parameters from its shape: attention, gated MLP and embeddings. With experts,
    every expert's gated MLP counts (vLLM loads them all) plus the router, and the shared
    experts; a dense layer's MLP is then taken to be the experts'."""
    hidden = int(facts["hidden_size"])
    heads = int(facts["num_attention_heads"])
    kv_heads = int(facts.get("num_key_value_heads", heads))
    head_dim = int(facts.get("head_dim", hidden // heads))
    intermediate = int(facts.get("intermediate_size", 4 * hidden))
    attention = 2 * hidden * heads * head_dim + 2 * hidden * kv_heads * head_dim
    mlp = 3 * hidden * intermediate
    experts = int(facts.get("num_experts", 0))
    if experts > 1:
        expert_size = int(facts.get("moe_intermediate_size", intermediate))
        shared = int(facts.get("shared_experts", 0))
        mlp = (experts + shared) * 3 * hidden * expert_size + experts * hidden
    embeddings = int(facts["vocab_size"]) * hidden
    lm_head = 0 if facts.get("tie_word_embeddings", False) else embeddings
    return int(facts["num_layers"]) * (attention + mlp) + embeddings + lm_head


def _estimate_vision_parameters(tower: Mapping[str, Any]) -> int | None:
    """ViT parameters from its shape, when the depth is known: attention plus an MLP counted
    as gated (three matrices), which over-counts a plain two-matrix MLP on the safe side."""
    if not {"hidden_size", "intermediate_size", "num_layers"} <= tower.keys():
        return None
    hidden, intermediate = int(tower["hidden_size"]), int(tower["intermediate_size"])
    return int(tower["num_layers"]) * (4 * hidden * hidden + 3 * hidden * intermediate)


def _describe_how(model_id: str) -> str:
    families = ", ".join(family_names())
    return (
        f"describe {model_id} with spec.model.architecture (family, and numLayers, hiddenSize, "
        "numAttentionHeads, numKeyValueHeads, headDim, vocabSize, maxPositionEmbeddings, "
        "parameters, visionParameters) or point spec.model.architecture.configMapRef at its "
        f"config.json (vlm-operator plan --architecture-file offline); families: {families}"
    )


def unsized_architectures() -> Mapping[str, str | None]:
    """vLLM model classes the catalog refuses, each with its nearest family (None: no images)."""
    unsized: Mapping[str, str | None] = _catalog()["unsized"]
    return unsized


def sized_architectures() -> tuple[str, ...]:
    """vLLM model classes the catalog sizes."""
    return tuple(_catalog()["architectures"])


def _unsized_message(model_id: str, class_name: str) -> str:
    nearest = _catalog()["unsized"][class_name]
    if nearest is None:
        return (
            f"{model_id}: {class_name} takes no image input; the operator sizes "
            "vision-language models only"
        )
    return (
        f"{model_id}: {class_name} has no image-token rule of its own in the catalog; the "
        f"nearest family is {nearest}. If its images are processed like {nearest}'s, set "
        f"spec.model.architecture.family: {nearest} next to the configMapRef; otherwise "
        + _describe_how(model_id)
    )


def resolve_architecture(
    model_id: str,
    overrides: ArchitectureOverrides | None = None,
    config: Mapping[str, Any] | None = None,
) -> Architecture:
    """The model's facts: catalog entry, completed by config.json, overridden by the spec.

    Raises UnknownArchitectureError when the layers together leave a required fact unknown."""
    catalog = _catalog()
    canonical_id, entry = _models_by_lower_id().get(model_id.lower(), (model_id, {}))
    parsed = parse_hf_config(config) if config else {}
    facts: dict[str, Any] = {**entry, **parsed, **_explicit_overrides(overrides)}

    class_name = facts.get("architecture")
    class_facts: Mapping[str, Any] = catalog["architectures"].get(class_name, {})
    family = facts.get("family") or class_facts.get("family")
    if family is None and class_name is not None and class_name in catalog["unsized"]:
        raise UnknownArchitectureError(_unsized_message(model_id, class_name))
    if family is None:
        detail = f"architecture {class_name} is not in the catalog" if class_name else ""
        raise UnknownArchitectureError(
            f"{model_id} is not in the architecture catalog{'; ' + detail if detail else ''}: "
            + _describe_how(model_id)
        )
    family_facts: Mapping[str, Any] = catalog["families"][family]
    facts["family"] = family
    missing = [name for name in REQUIRED_FIELDS if name not in facts]
    if missing:
        raise UnknownArchitectureError(
            f"{model_id}: architecture facts missing ({', '.join(missing)}); "
            + _describe_how(model_id)
        )

    attention = facts.get("attention") or class_facts.get("attention") or _attention_of(facts)
    _check_attention_facts(model_id, attention, facts)

    tower_facts = {**family_facts["vision_tower"], **facts.get("vision_tower", {})}
    estimated = "parameters" not in facts
    vision_parameters = facts.get("vision_parameters")
    if vision_parameters is None:
        vision_parameters = _estimate_vision_parameters(tower_facts)
    if vision_parameters is None:
        vision_parameters = int(family_facts["vision_parameters"])
    parameters = facts.get("parameters")
    if parameters is None:
        parameters = _estimate_text_parameters(facts) + vision_parameters

    heads = int(facts["num_attention_heads"])
    _check_consistency(model_id, attention, facts, int(parameters), int(vision_parameters))
    versions = class_facts.get("vllm") or family_facts.get("vllm")
    return Architecture(
        model_id=canonical_id,
        vllm_architecture=class_name,
        family=family,
        attention=attention,
        parameters=int(parameters),
        vision_parameters=int(vision_parameters),
        num_layers=int(facts["num_layers"]),
        hidden_size=int(facts["hidden_size"]),
        intermediate_size=int(facts.get("intermediate_size", 4 * int(facts["hidden_size"]))),
        num_attention_heads=heads,
        num_key_value_heads=int(facts.get("num_key_value_heads", heads)),
        head_dim=int(facts.get("head_dim", int(facts["hidden_size"]) // heads)),
        vocab_size=int(facts["vocab_size"]),
        max_position_embeddings=int(facts["max_position_embeddings"]),
        tie_word_embeddings=bool(facts.get("tie_word_embeddings", False)),
        supports_video=bool(facts.get("video", family_facts.get("video", False))),
        vision_tower=VisionTower(
            hidden_size=int(tower_facts["hidden_size"]),
            intermediate_size=int(tower_facts["intermediate_size"]),
            patches_per_token=float(tower_facts["patches_per_token"]),
        ),
        wrapper_tokens=int(family_facts["wrapper_tokens"]),
        vllm_versions=VersionRange(**versions) if versions else ALWAYS_SUPPORTED,
        processor=dict(family_facts["processor"]),
        checkpoint_quantization=facts.get("checkpoint_quantization"),
        sliding_window=facts.get("sliding_window"),
        global_layers=facts.get("global_layers"),
        cross_attention_layers=int(facts.get("cross_attention_layers", 0)),
        kv_lora_rank=facts.get("kv_lora_rank"),
        qk_rope_head_dim=facts.get("qk_rope_head_dim"),
        parameters_estimated=estimated,
    )


ATTENTION_FACTS = {
    "sliding-window-mix": (
        ("sliding_window", "global_layers"),
        "slidingWindow and the number of full-attention layers "
        "(layer_types or sliding_window_pattern in config.json)",
    ),
    "multi-head-latent": (
        ("kv_lora_rank", "qk_rope_head_dim"),
        "kv_lora_rank and qk_rope_head_dim from config.json",
    ),
}


def _check_attention_facts(model_id: str, attention: str, facts: Mapping[str, Any]) -> None:
    """Raise when the KV cache layout of this attention kind cannot be known."""
    needed, what = ATTENTION_FACTS.get(attention, ((), ""))
    if any(name not in facts for name in needed):
        raise UnknownArchitectureError(f"{model_id}: {attention} attention needs {what}")


def _check_consistency(
    model_id: str,
    attention: str,
    facts: Mapping[str, Any],
    parameters: int,
    vision_parameters: int,
) -> None:
    """Raise when the facts contradict each other, naming the field to correct."""
    heads = int(facts["num_attention_heads"])
    kv_heads = int(facts.get("num_key_value_heads", heads))
    if attention != "multi-head-latent" and (kv_heads > heads or heads % kv_heads):
        raise UnknownArchitectureError(
            f"{model_id}: numKeyValueHeads {kv_heads} does not divide numAttentionHeads "
            f"{heads}; grouped-query attention needs whole groups of query heads per KV head"
        )
    if vision_parameters >= parameters:
        raise UnknownArchitectureError(
            f"{model_id}: visionParameters {vision_parameters} is not below parameters "
            f"{parameters}, which count the vision tower and the language model together"
        )


def _attention_of(facts: Mapping[str, Any]) -> str:
    """The attention kind implied by the facts when nothing names it."""
    if "kv_lora_rank" in facts:
        return "multi-head-latent"
    if "sliding_window" in facts and "global_layers" in facts:
        return "sliding-window-mix"
    return "standard"
