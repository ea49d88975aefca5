"""Architecture catalog: coverage of the research catalog, overrides, config.json, versions."""

from __future__ import annotations

from typing import Any

import pytest

from vlm_operator.api.v1alpha1 import ArchitectureOverrides
from vlm_operator.catalog.architectures import (
    UnknownArchitectureError,
    resolve_architecture,
)
from vlm_operator.catalog.engine import VLLM_IMAGE, VLLM_VERSION, VersionRange, parse_version
from vlm_operator.catalog.hf_config import parse_hf_config

QWEN2_5_VL_3B_CONFIG: dict[str, Any] = {
    "architectures": ["Qwen2_5_VLForConditionalGeneration"],
    "hidden_size": 2048,
    "intermediate_size": 11008,
    "num_attention_heads": 16,
    "num_hidden_layers": 36,
    "num_key_value_heads": 2,
    "vocab_size": 151936,
    "max_position_embeddings": 128000,
    "tie_word_embeddings": True,
    "vision_config": {"depth": 32, "hidden_size": 1280, "intermediate_size": 3420},
}


def test_engine_pin() -> None:
    assert VLLM_VERSION == "0.32.0"
    assert VLLM_IMAGE == "vllm/vllm-openai:v0.32.0"


@pytest.mark.parametrize(
    ("versions", "version", "inside"),
    [
        (VersionRange("0.6.2", "0.10.2"), "0.10.2", True),
        (VersionRange("0.6.2", "0.10.2"), "0.32.0", False),
        (VersionRange("0.7.2"), "0.32.0", True),
        (VersionRange("0.7.2"), "0.7.1", False),
    ],
)
def test_version_range(versions: VersionRange, version: str, inside: bool) -> None:
    assert versions.contains(version) is inside
    assert parse_version("v0.10.2") == (0, 10, 2)


@pytest.mark.parametrize(
    ("model_id", "family", "attention", "served_now"),
    [
        ("qwen/qwen2.5-vl-7b-instruct", "qwen2.5-vl", "standard", True),
        ("google/gemma-3-27b-it", "gemma3", "sliding-window-mix", True),
        ("deepseek-ai/deepseek-vl2", "deepseek-vl2", "multi-head-latent", True),
        ("meta-llama/Llama-3.2-11B-Vision-Instruct", "mllama", "cross-attention", False),
    ],
)
def test_catalog_entries(model_id: str, family: str, attention: str, served_now: bool) -> None:
    architecture = resolve_architecture(model_id)
    assert (architecture.family, architecture.attention) == (family, attention)
    assert architecture.vllm_versions.contains(VLLM_VERSION) is served_now


def test_unknown_model_says_how_to_describe_it() -> None:
    with pytest.raises(UnknownArchitectureError, match=r"spec\.model\.architecture"):
        resolve_architecture("acme/secret-vlm")


def test_overrides_replace_catalog_values() -> None:
    overrides = ArchitectureOverrides(max_position_embeddings=32768, supports_video=False)
    architecture = resolve_architecture("Qwen/Qwen2.5-VL-7B-Instruct", overrides)
    assert architecture.max_position_embeddings == 32768
    assert architecture.supports_video is False
    assert architecture.num_layers == 28


def test_config_json_describes_a_model_outside_the_catalog() -> None:
    architecture = resolve_architecture("acme/qwen-vl-finetune", config=QWEN2_5_VL_3B_CONFIG)
    assert (architecture.family, architecture.num_key_value_heads) == ("qwen2.5-vl", 2)
    assert architecture.head_dim == 128
    assert architecture.parameters_estimated
    assert architecture.parameters == pytest.approx(3_754_622_976, rel=0.03)


def test_explicit_overrides_win_over_config_json() -> None:
    overrides = ArchitectureOverrides(num_layers=30, parameters=4_000_000_000)
    architecture = resolve_architecture("acme/x", overrides, QWEN2_5_VL_3B_CONFIG)
    assert (architecture.num_layers, architecture.parameters) == (30, 4_000_000_000)


def test_unknown_architecture_class_is_refused() -> None:
    config = {**QWEN2_5_VL_3B_CONFIG, "architectures": ["BrandNewVLM"]}
    with pytest.raises(UnknownArchitectureError, match="BrandNewVLM"):
        resolve_architecture("acme/new", config=config)


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (
            {"architectures": ["Gemma3ForConditionalGeneration"],
             "text_config": {"num_hidden_layers": 34, "sliding_window": 1024,
                             "sliding_window_pattern": 6, "hidden_size": 2560}},
            {"architecture": "Gemma3ForConditionalGeneration", "num_layers": 34,
             "hidden_size": 2560, "sliding_window": 1024, "global_layers": 5},
        ),
        (
            {"text_config": {"num_hidden_layers": 4, "sliding_window": 512,
                             "layer_types": ["sliding_attention"] * 3 + ["full_attention"]}},
            {"num_layers": 4, "sliding_window": 512, "global_layers": 1},
        ),
        (
            {"llm_config": {"vocab_size": 151674, "tie_word_embeddings": False},
             "quantization_config": {"quant_method": "AWQ"},
             "vision_config": {"embed_dim": 1280, "mlp_ratio": 4, "depth": 32}},
            {"vocab_size": 151674, "tie_word_embeddings": False,
             "checkpoint_quantization": "awq",
             "vision_tower": {"hidden_size": 1280, "intermediate_size": 5120, "num_layers": 32}},
        ),
        ({"num_attention_heads": "many", "hidden_size": -1}, {}),
    ],
)  # fmt: skip
def test_parse_hf_config(config: dict[str, Any], expected: dict[str, Any]) -> None:
    assert parse_hf_config(config) == expected


def qwen3_vl_config(text: dict[str, Any], architecture: str) -> dict[str, Any]:
    """A Qwen3-VL config.json: the published layout (text_config, vision_config)."""
    return {
        "architectures": [architecture],
        "text_config": {
            "head_dim": 128,
            "num_attention_heads": 32,
            "vocab_size": 151936,
            "max_position_embeddings": 262144,
            "tie_word_embeddings": False,
            **text,
        },
        "vision_config": {
            "depth": 27,
            "hidden_size": 1152,
            "intermediate_size": 4304,
            "patch_size": 16,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "out_hidden_size": text["hidden_size"],
            "deepstack_visual_indexes": [8, 16, 24],
        },
    }


# Shapes from the published Qwen3-VL-8B-Instruct and Qwen3-VL-30B-A3B-Instruct config.json.
QWEN3_VL_8B = qwen3_vl_config(
    {"hidden_size": 4096, "intermediate_size": 12288, "num_hidden_layers": 36,
     "num_key_value_heads": 8},
    "Qwen3VLForConditionalGeneration",
)  # fmt: skip
QWEN3_VL_30B_A3B = qwen3_vl_config(
    {"hidden_size": 2048, "intermediate_size": 6144, "num_hidden_layers": 48,
     "num_key_value_heads": 4, "num_experts": 128, "num_experts_per_tok": 8,
     "moe_intermediate_size": 768},
    "Qwen3VLMoeForConditionalGeneration",
)  # fmt: skip


def test_qwen3_vl_resolves_from_its_config_json_alone() -> None:
    architecture = resolve_architecture("Qwen/Qwen3-VL-8B-Instruct", config=QWEN3_VL_8B)
    assert architecture.family == "qwen3-vl"
    assert architecture.vision_tower.patches_per_token == 4.0
    assert architecture.parameters_estimated
    # Model card: 8.8B parameters.
    assert 8.0e9 < architecture.parameters < 9.6e9


def test_moe_weights_count_every_expert() -> None:
    architecture = resolve_architecture("Qwen/Qwen3-VL-30B-A3B-Instruct", config=QWEN3_VL_30B_A3B)
    # Model card: 31B parameters in total, 3B active; vLLM loads them all.
    assert 28e9 < architecture.parameters < 34e9


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"numAttentionHeads": 28, "numKeyValueHeads": 6}, "numKeyValueHeads 6"),
        ({"parameters": 8_000_000_000, "visionParameters": 9_000_000_000},
         "visionParameters 9000000000"),
    ],
)  # fmt: skip
def test_contradictory_facts_are_refused_naming_the_field(
    overrides: dict[str, Any], message: str
) -> None:
    described = ArchitectureOverrides.model_validate({"family": "qwen2.5-vl", **overrides})
    with pytest.raises(UnknownArchitectureError, match=message):
        resolve_architecture("Qwen/Qwen2.5-VL-7B-Instruct", described)


def test_an_unsized_registry_class_is_refused_naming_its_nearest_family() -> None:
    config = {**QWEN2_5_VL_3B_CONFIG, "architectures": ["KimiVLForConditionalGeneration"]}
    with pytest.raises(UnknownArchitectureError, match="nearest family is qwen2-vl"):
        resolve_architecture("moonshotai/Kimi-VL-A3B-Instruct", config=config)
    described = ArchitectureOverrides.model_validate({"family": "qwen2-vl"})
    architecture = resolve_architecture("moonshotai/Kimi-VL-A3B-Instruct", described, config)
    assert architecture.family == "qwen2-vl"


def test_an_audio_class_is_refused_as_taking_no_images() -> None:
    config = {**QWEN2_5_VL_3B_CONFIG, "architectures": ["WhisperForConditionalGeneration"]}
    with pytest.raises(UnknownArchitectureError, match="takes no image input"):
        resolve_architecture("openai/whisper-large-v3", config=config)
