"""Tiny checkpoints of real vision-language architectures, written offline with random weights.

Each checkpoint is complete as vLLM loads one: config.json with a text model of a few hundred
thousand parameters, random safetensors weights, a byte-level BPE tokenizer trained here with the
family's special tokens, the chat template and the processor config. The processor settings are
the published checkpoints' defaults, so the operator's catalog describes them. Run it with the
engine venv's interpreter (it needs torch, transformers and tokenizers):

    python e2e/engine/tiny_models.py OUT_DIR [NAME ...]
"""

from __future__ import annotations

import json
import random
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    Idefics3Config,
    Idefics3ForConditionalGeneration,
    Idefics3ImageProcessor,
    Idefics3Processor,
    PreTrainedTokenizerFast,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2_5_VLProcessor,
    Qwen2VLImageProcessor,
    Qwen2VLVideoProcessor,
)

VOCAB_SIZE = 2048
SEED = 0
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
WORDS = [
    "the",
    "a",
    "an",
    "image",
    "picture",
    "photo",
    "shows",
    "cat",
    "dog",
    "bird",
    "car",
    "tree",
    "house",
    "street",
    "sky",
    "red",
    "green",
    "blue",
    "white",
    "black",
    "small",
    "large",
    "left",
    "right",
    "top",
    "bottom",
    "of",
    "in",
    "on",
    "with",
    "and",
    "is",
    "are",
    "there",
    "what",
    "describe",
    "how",
    "many",
    "colour",
    "color",
    "number",
    "text",
    "reads",
    "says",
    "one",
    "two",
    "three",
    "four",
    "five",
]

QWEN_SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
]
QWEN_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'text' %}{{ part['text'] }}"
    "{% elif part['type'] in ('image', 'image_url') %}"
    "{{ '<|vision_start|><|image_pad|><|vision_end|>' }}"
    "{% elif part['type'] in ('video', 'video_url') %}"
    "{{ '<|vision_start|><|video_pad|><|vision_end|>' }}"
    "{% endif %}{% endfor %}{% endif %}"
    "{{ '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

IDEFICS3_TILES_PER_SIDE = 4
"""1536 / 384: the most tiles along one side, so the row and column tags the tokenizer needs."""
IDEFICS3_SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<fake_token_around_image>",
    "<image>",
    "<end_of_utterance>",
    "<global-img>",
    *(
        f"<row_{row}_col_{column}>"
        for row in range(1, IDEFICS3_TILES_PER_SIDE + 1)
        for column in range(1, IDEFICS3_TILES_PER_SIDE + 1)
    ),
]
"""As the SmolVLM-256M/500M tokenizers have them: the tile tags vLLM writes around each tile are
tokens of their own. (SmolVLM-Instruct's tokenizer lacks them and splits the tags as text.)"""
IDEFICS3_CHAT_TEMPLATE = (
    "{{ '<|im_start|>' }}"
    "{% for message in messages %}"
    "{{ message['role'] | capitalize + ':' }}"
    "{% if message['content'] is string %}{{ ' ' + message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'text' %}{{ ' ' + part['text'] }}"
    "{% elif part['type'] in ('image', 'image_url') %}{{ '<image>' }}"
    "{% endif %}{% endfor %}{% endif %}"
    "{{ '<end_of_utterance>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)


def corpus(lines: int = 4000) -> Iterator[str]:
    """Short English-like sentences with digits, punctuation and blank lines, from a fixed seed."""
    generator = random.Random(SEED)
    for index in range(lines):
        words = generator.choices(WORDS, k=generator.randint(3, 14))
        ending = "\n\n" if index % 7 == 0 else "\n"
        yield f"{' '.join(words).capitalize()} {index % 100}.{ending}"


def train_tokenizer(special_tokens: list[str], **tokens: str) -> PreTrainedTokenizerFast:
    """A byte-level BPE of VOCAB_SIZE entries at most, the special tokens first (ids 0, 1, ...)."""
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=special_tokens,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(corpus(), trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe, additional_special_tokens=special_tokens, **tokens
    )


def save_model(model: torch.nn.Module, out: Path) -> None:
    """Random weights in bfloat16, as safetensors."""
    model.to(torch.bfloat16).save_pretrained(out)


def token_ids(tokenizer: Any) -> Callable[[str], int]:
    """Look up the id of one special token of a freshly trained tokenizer."""

    def lookup(token: str) -> int:
        found = tokenizer.convert_tokens_to_ids(token)
        if not isinstance(found, int):
            raise ValueError(f"{token!r} is not one token of the tokenizer")
        return found

    return lookup


def write_qwen2_5_vl(out: Path) -> None:
    """Qwen2_5_VLForConditionalGeneration: 2-layer text model and 2-block vision tower."""
    tokenizer = train_tokenizer(
        QWEN_SPECIAL_TOKENS, eos_token="<|im_end|>", pad_token="<|endoftext|>"
    )
    ids = token_ids(tokenizer)
    text: dict[str, Any] = {
        "vocab_size": VOCAB_SIZE,
        "hidden_size": 128,
        "intermediate_size": 256,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 32768,
        # mrope_section sums to head_dim / 2 (head_dim 32).
        "rope_parameters": {"rope_type": "default", "rope_theta": 1e6, "mrope_section": [4, 6, 6]},
        "bos_token_id": ids("<|endoftext|>"),
        "eos_token_id": ids("<|im_end|>"),
        "pad_token_id": ids("<|endoftext|>"),
    }
    vision: dict[str, Any] = {
        "depth": 2,
        "hidden_size": 128,
        "intermediate_size": 256,
        "num_heads": 2,
        "patch_size": 14,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
        "window_size": 112,
        "out_hidden_size": 128,
        "fullatt_block_indexes": [1],
    }
    config = Qwen2_5_VLConfig(
        text_config=text,
        vision_config=vision,
        image_token_id=ids("<|image_pad|>"),
        video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"),
        tie_word_embeddings=True,
    )
    save_model(Qwen2_5_VLForConditionalGeneration(config), out)
    # The published checkpoints' processor: patch 14, merge 2, min/max pixels of Qwen2.5-VL.
    pixels = {"min_pixels": 3136, "max_pixels": 12845056}
    image_processor = Qwen2VLImageProcessor(
        patch_size=14,
        merge_size=2,
        temporal_patch_size=2,
        image_mean=CLIP_MEAN,
        image_std=CLIP_STD,
        size={"shortest_edge": pixels["min_pixels"], "longest_edge": pixels["max_pixels"]},
    )
    video_processor = Qwen2VLVideoProcessor(
        patch_size=14, merge_size=2, temporal_patch_size=2, image_mean=CLIP_MEAN, image_std=CLIP_STD
    )
    processor = Qwen2_5_VLProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        chat_template=QWEN_CHAT_TEMPLATE,
    )
    processor.save_pretrained(out)
    # Older readers look for the flat image processor file with min/max pixels.
    legacy = {**image_processor.to_dict(), **pixels}
    (out / "preprocessor_config.json").write_text(json.dumps(legacy, indent=2))


def write_idefics3(out: Path) -> None:
    """Idefics3ForConditionalGeneration (SmolVLM): 384-pixel tiles of 81 tokens, up to 4x4 of
    them for the 1536-pixel longest edge, plus the global image."""
    tokenizer = train_tokenizer(
        IDEFICS3_SPECIAL_TOKENS, eos_token="<end_of_utterance>", pad_token="<|endoftext|>"
    )
    ids = token_ids(tokenizer)
    text: dict[str, Any] = {
        "model_type": "llama",
        "vocab_size": VOCAB_SIZE,
        "hidden_size": 128,
        "intermediate_size": 256,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 32,
        "max_position_embeddings": 16384,
        "rope_parameters": {"rope_type": "default", "rope_theta": 273768.0},
        "bos_token_id": ids("<|im_start|>"),
        "eos_token_id": ids("<end_of_utterance>"),
        "pad_token_id": ids("<|endoftext|>"),
    }
    vision: dict[str, Any] = {
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "image_size": 384,
        "patch_size": 14,
    }
    config = Idefics3Config(
        text_config=text,
        vision_config=vision,
        scale_factor=3,
        image_token_id=ids("<image>"),
        pad_token_id=ids("<|endoftext|>"),
        tie_word_embeddings=False,
    )
    save_model(Idefics3ForConditionalGeneration(config), out)
    image_processor = Idefics3ImageProcessor(
        do_image_splitting=True,
        size={"longest_edge": 1536},
        max_image_size={"longest_edge": 384},
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    )
    processor = Idefics3Processor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        image_seq_len=81,  # (384 / 14)^2 patches over a 3 x 3 pixel shuffle
        chat_template=IDEFICS3_CHAT_TEMPLATE,
    )
    processor.save_pretrained(out)


WRITERS: dict[str, Callable[[Path], None]] = {
    "qwen2.5-vl": write_qwen2_5_vl,
    "idefics3": write_idefics3,
}
"""Tiny models by name."""


def main(argv: list[str]) -> None:
    """Write the named tiny models (all by default) under OUT_DIR/<name>."""
    if not argv:
        raise SystemExit(__doc__)
    root, names = Path(argv[0]), argv[1:] or list(WRITERS)
    torch.manual_seed(SEED)
    for name in names:
        out = root / name
        out.mkdir(parents=True, exist_ok=True)
        WRITERS[name](out)
        print(out)


if __name__ == "__main__":
    main(sys.argv[1:])
