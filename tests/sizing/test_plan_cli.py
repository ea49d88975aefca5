"""`vlm-operator plan`: flags, files and the three output formats."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from vlm_operator.cli import main

REQUIRED_KEYS = {
    "feasible", "reason", "gpuProduct", "precision", "tensorParallelSize", "gpusPerReplica",
    "maxModelLen", "maxNumSeqs", "gpuMemoryUtilization", "tokensPerImage", "kvCacheTokens",
    "memoryGiB", "engineArgs", "rejected",
}  # fmt: skip
MEMORY_KEYS = {"weights", "vision", "activation", "cudaGraphs", "overhead", "kvCache", "budget"}


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Exit code, stdout and stderr of one invocation."""
    code = main(["plan", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_json_output_from_flags(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys,
        "--model", "Qwen/Qwen2.5-VL-7B-Instruct", "--gpu", "NVIDIA-H100-80GB-HBM3",
        "--images", "2", "--image-size", "1024x1024", "--concurrency", "8",
        "--gpu-memory-utilization", "0.9", "--max-num-seqs", "8", "-o", "json",
    )  # fmt: skip
    document = json.loads(out)
    assert code == 0
    assert set(document) >= REQUIRED_KEYS
    assert set(document["memoryGiB"]) == MEMORY_KEYS
    assert document["tokensPerImage"] == 1371
    assert (document["gpuMemoryUtilization"], document["maxNumSeqs"]) == (0.9, 8)
    assert document["engineArgs"][0] == "Qwen/Qwen2.5-VL-7B-Instruct"


def test_pinned_infeasible_candidate_keeps_its_figures(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(
        capsys,
        "--model", "Qwen/Qwen2.5-VL-72B-Instruct", "--gpu", "NVIDIA-L4",
        "--precision", "bf16", "--tp", "1", "-o", "yaml",
    )  # fmt: skip
    document = yaml.safe_load(out)
    assert code == 1
    assert document["feasible"] is False
    assert document["reason"]
    assert document["memoryGiB"]["weights"] > 100
    assert document["rejected"] == [
        {"candidate": "NVIDIA-L4/bf16/tp1", "reason": document["rejected"][0]["reason"]}
    ]


def test_table_from_a_visionmodel_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = tmp_path / "vlm.yaml"
    manifest.write_text(
        "apiVersion: vlm-operator.io/v1alpha1\nkind: VisionModel\nmetadata: {name: q}\n"
        "spec:\n  model: {id: Qwen/Qwen2-VL-2B-Instruct}\n"
        "  workload: {maxImagesPerRequest: 2}\n"
    )
    code, out, _ = run(capsys, str(manifest), "--gpu", "NVIDIA-L4")
    assert code == 0
    assert out.startswith("1x NVIDIA-L4 (bf16, tp 1): fits")
    assert "memory per GPU (GiB)" in out
    assert "vllm serve Qwen/Qwen2-VL-2B-Instruct --port 8000" in out


def test_architecture_file_describes_a_new_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config.json"
    config.write_text(
        json.dumps(
            {
                "architectures": ["Qwen2VLForConditionalGeneration"],
                "hidden_size": 1536,
                "intermediate_size": 8960,
                "num_attention_heads": 12,
                "num_hidden_layers": 28,
                "num_key_value_heads": 2,
                "vocab_size": 151936,
                "max_position_embeddings": 32768,
                "tie_word_embeddings": True,
            }
        )
    )
    code, out, _ = run(
        capsys, "--model", "acme/tiny-vl", "--architecture-file", str(config), "-o", "json"
    )
    assert code == 0
    assert json.loads(out)["feasible"] is True


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ((), "give a VisionModel FILE or --model"),
        (("--model", "a/b", "--image-size", "big"), "expected WIDTHxHEIGHT"),
        (("--model", "a/b", "--images", "100"), "maxImagesPerRequest"),
        (("--model", "a/b", "--architecture-file", "/nonexistent.json"), "nonexistent"),
    ],
)
def test_usage_errors(
    argv: tuple[str, ...], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert message in err


def test_table_shows_the_image_budget(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys,
        "--model", "Qwen/Qwen2.5-VL-7B-Instruct", "--gpu", "NVIDIA-H100-80GB-HBM3",
        "--images", "2", "--image-size", "1000x700",
    )  # fmt: skip
    assert code == 0
    # Worked by hand: Qwen2.5-VL resizes to multiples of 28 px (14 px patches, 2x2 merge), so
    # 1000x700 becomes 1008x700, 36 x 25 = 900 tokens, plus the vision start and end tokens.
    assert (
        "image tokens: 902 for the costliest image inside the declared box (1000x700), "
        "902 for the declared size" in out
    )
    assert "encoder cache " in out
    assert "placement: " in out
