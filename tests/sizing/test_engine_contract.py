"""Rendered engine arguments parsed by the pinned vLLM's own `vllm serve` parser.

Needs vLLM importable (see docs/sizing.md for the separate environment); skipped otherwise.
"""

from __future__ import annotations

from typing import Any

import pytest

from vlm_operator.api.v1alpha1 import VisionModelSpec
from vlm_operator.catalog.engine import SERVE_PORT, VLLM_VERSION
from vlm_operator.sizing import Plan, plan_visionmodel

H100 = "NVIDIA-H100-80GB-HBM3"

CASES: list[dict[str, Any]] = [
    {"model": {"id": "Qwen/Qwen2.5-VL-7B-Instruct", "revision": "main", "servedName": "qwen"},
     "workload": {"maxImagesPerRequest": 4}, "hardware": {"gpuProduct": H100}},
    {"model": {"id": "Qwen/Qwen2.5-VL-72B-Instruct"}, "hardware": {"gpuProduct": H100},
     "workload": {"maxVideosPerRequest": 1, "maxVideoFrames": 16}},
    {"model": {"id": "OpenGVLab/InternVL3-8B"}, "hardware": {"gpuProduct": "NVIDIA-L4",
     "kvCacheDtype": "fp8"}},
    {"model": {"id": "Qwen/Qwen2-VL-2B-Instruct"}, "hardware": {"gpuProduct": "Tesla-T4"},
     "workload": {"maxImagesPerRequest": 0}},
    {"model": {"id": "Qwen/Qwen2.5-VL-7B-Instruct", "checkpointQuantization": "awq"},
     "hardware": {"gpuProduct": "NVIDIA-A10G"}, "engine": {"gpuMemoryUtilizationPercent": 90}},
    {"model": {"id": "google/gemma-3-27b-it"}, "hardware": {"gpuProduct": "NVIDIA-L40S"}},
]  # fmt: skip


def plan_for(body: dict[str, Any]) -> Plan:
    """A feasible plan for the spec body."""
    plan = plan_visionmodel(VisionModelSpec.model_validate(body))
    assert plan.feasible, plan.reason
    return plan


@pytest.mark.contract
@pytest.mark.parametrize("body", CASES, ids=[case["model"]["id"] for case in CASES])
def test_vllm_parses_the_rendered_arguments(
    body: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VLLM_TARGET_DEVICE", "cpu")  # no GPU here: let vLLM pick its CPU platform
    vllm = pytest.importorskip("vllm")
    from vllm.config.multimodal import MultiModalConfig
    from vllm.engine.arg_utils import AsyncEngineArgs
    from vllm.entrypoints.launchers.cli_args import make_arg_parser, validate_parsed_serve_args
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    assert vllm.__version__ == VLLM_VERSION
    plan = plan_for(body)
    parsed = make_arg_parser(FlexibleArgumentParser()).parse_args(plan.engine_args)
    validate_parsed_serve_args(parsed)
    engine = AsyncEngineArgs.from_cli_args(parsed)

    assert parsed.model_tag == body["model"]["id"]
    assert parsed.port == SERVE_PORT
    assert engine.tensor_parallel_size == plan.tensor_parallel_size
    assert engine.max_model_len == plan.max_model_len
    assert engine.max_num_seqs == plan.max_num_seqs
    assert engine.gpu_memory_utilization == pytest.approx(plan.gpu_memory_utilization)
    assert engine.revision == body["model"].get("revision")
    served = body["model"].get("servedName", body["model"]["id"])
    assert engine.served_model_name in (served, [served])
    workload = body.get("workload", {})
    multimodal = MultiModalConfig(
        limit_per_prompt=engine.limit_mm_per_prompt,
        mm_processor_kwargs=engine.mm_processor_kwargs,
    )
    assert multimodal.get_limit_per_prompt("image") == workload.get("maxImagesPerRequest", 1)
    assert multimodal.get_limit_per_prompt("video") == workload.get("maxVideosPerRequest", 0)


TRUST_REMOTE_CODE_SPELLINGS = [
    "--trust-remote-code",
    "--trust_remote_code",
    "--trust-remote",
    "--trust-rem",
    "--no-trust-remote-code",
    "--trust-request-chat-template",
    "--trust-request-mm-kwargs",
]


@pytest.mark.contract
@pytest.mark.parametrize("arg", TRUST_REMOTE_CODE_SPELLINGS)
def test_trust_remote_code_is_found_exactly_when_vllm_turns_it_on(
    arg: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VLLM_TARGET_DEVICE", "cpu")
    pytest.importorskip("vllm")
    from vllm.entrypoints.launchers.cli_args import make_arg_parser
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    from vlm_operator.sizing.engine_args import requests_trust_remote_code

    parsed = make_arg_parser(FlexibleArgumentParser()).parse_args(["some/model", arg])
    assert requests_trust_remote_code([arg]) is parsed.trust_remote_code
