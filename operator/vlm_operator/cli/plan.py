"""`vlm-operator plan`: the operator's sizing plan, offline, for a VisionModel file or flags."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from vlm_operator.api.constants import KIND
from vlm_operator.api.v1alpha1 import VisionModelSpec
from vlm_operator.sizing import Plan, plan_visionmodel

EXIT_INFEASIBLE = 1
EXIT_USAGE = 2


class PlanInputError(Exception):
    """The file or flags do not describe a VisionModel spec."""


def add_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the plan subcommand."""
    plan = commands.add_parser(
        "plan",
        help="size a VisionModel offline: GPUs, precision, parallelism and vLLM arguments",
        description="Print the plan the operator would choose, without a cluster. Flags "
        "override the file's spec. Exit code 1 when nothing fits.",
    )
    plan.add_argument("file", nargs="?", type=Path, metavar="FILE", help="a VisionModel YAML file")
    plan.add_argument("--model", help="Hugging Face model id (spec.model.id)")
    plan.add_argument("--gpu", help="nvidia.com/gpu.product value, or auto for the catalog")
    plan.add_argument(
        "--precision", choices=["auto", "bf16", "fp16", "fp8", "awq", "gptq"], help="pin it"
    )
    plan.add_argument("--tp", type=int, help="pin tensor parallelism")
    plan.add_argument("--max-gpus-per-replica", type=int, help="most GPUs per replica")
    plan.add_argument("--max-model-len", type=int, help="pin --max-model-len")
    plan.add_argument("--max-num-seqs", type=int, help="pin --max-num-seqs")
    plan.add_argument(
        "--gpu-memory-utilization", type=float, help="pin it, as a fraction (e.g. 0.9)"
    )
    plan.add_argument("--kv-cache-dtype", choices=["auto", "fp8"], help="KV cache element type")
    plan.add_argument("--images", type=int, help="most images per request")
    plan.add_argument("--image-size", metavar="WxH", help="largest image, e.g. 1280x1280")
    plan.add_argument("--concurrency", type=int, help="requests in flight per replica")
    plan.add_argument(
        "--architecture-file",
        type=Path,
        metavar="F",
        help="the model's Hugging Face config.json, for models outside the catalog",
    )
    plan.add_argument(
        "-o", "--output", choices=["table", "json", "yaml"], default="table", help="format"
    )
    plan.set_defaults(handler=run_plan)


def _spec_from_file(path: Path) -> dict[str, Any]:
    try:
        documents = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
    except (OSError, yaml.YAMLError) as error:
        raise PlanInputError(f"{path}: {error}") from error
    for document in documents:
        if isinstance(document, dict) and document.get("kind") == KIND:
            spec = document.get("spec")
            if isinstance(spec, dict):
                return spec
    raise PlanInputError(f"{path}: no {KIND} with a spec")


def _image_size(text: str) -> dict[str, int]:
    width, separator, height = text.lower().partition("x")
    if not separator or not width.isdigit() or not height.isdigit():
        raise PlanInputError(f"--image-size {text!r}: expected WIDTHxHEIGHT, e.g. 1280x1280")
    return {"width": int(width), "height": int(height)}


def _set(spec: dict[str, Any], section: str, key: str, value: Any) -> None:
    if value is not None:
        spec.setdefault(section, {})[key] = value


def build_spec(args: argparse.Namespace) -> VisionModelSpec:
    """The spec from the file (if any) with the flags applied on top."""
    spec: dict[str, Any] = _spec_from_file(args.file) if args.file else {}
    if args.model:
        spec.setdefault("model", {})["id"] = args.model
    if "model" not in spec:
        raise PlanInputError("give a VisionModel FILE or --model")
    _set(spec, "hardware", "gpuProduct", args.gpu)
    _set(spec, "hardware", "precision", args.precision)
    _set(spec, "hardware", "tensorParallelSize", args.tp)
    _set(spec, "hardware", "maxGpusPerReplica", args.max_gpus_per_replica)
    _set(spec, "hardware", "kvCacheDtype", args.kv_cache_dtype)
    _set(spec, "engine", "maxModelLen", args.max_model_len)
    _set(spec, "engine", "maxNumSeqs", args.max_num_seqs)
    if args.gpu_memory_utilization is not None:
        _set(
            spec, "engine", "gpuMemoryUtilizationPercent", round(args.gpu_memory_utilization * 100)
        )
    _set(spec, "workload", "maxImagesPerRequest", args.images)
    if args.image_size:
        _set(spec, "workload", "maxImageSize", _image_size(args.image_size))
    _set(spec, "workload", "concurrency", args.concurrency)
    try:
        return VisionModelSpec.model_validate(spec)
    except ValidationError as error:
        raise PlanInputError(str(error)) from error


def _architecture_config(path: Path | None) -> dict[str, Any] | None:
    if path is None:
        return None
    try:
        parsed = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise PlanInputError(f"{path}: {error}") from error
    if not isinstance(parsed, dict):
        raise PlanInputError(f"{path}: a config.json is a JSON object")
    return parsed


def render_table(plan: Plan) -> str:
    """A readable per-GPU breakdown, the vllm command line and the rejected candidates."""
    verdict = "fits" if plan.feasible else "does NOT fit"
    lines = [
        f"{plan.gpus_per_replica}x {plan.gpu_product or '-'} ({plan.precision or '-'}, "
        f"tp {plan.tensor_parallel_size}): {verdict}",
    ]
    if plan.reason:
        lines.append(f"reason: {plan.reason}")
    lines += [
        f"max-model-len {plan.max_model_len}   max-num-seqs {plan.max_num_seqs}   "
        f"gpu-memory-utilization {plan.gpu_memory_utilization:.2f}",
        f"tokens per image {plan.tokens_per_image}   KV cache {plan.kv_cache_tokens:,} tokens   "
        f"encoder cache {plan.encoder_cache_tokens:,} tokens   "
        f"max-num-batched-tokens {plan.max_num_batched_tokens:,}",
    ]
    if plan.worst_case_image:
        lines.append(
            f"image tokens: {plan.tokens_per_image} for the costliest image inside the declared "
            f"box ({plan.worst_case_image}), {plan.tokens_per_declared_image} for the declared size"
        )
    if plan.placement:
        lines.append(f"placement: {plan.placement}")
    lines += [
        "",
        "memory per GPU (GiB)",
        f"  weights       {plan.weights_gib:8.2f}   (vision {plan.vision_gib:.2f})",
        f"  activation    {plan.activation_gib:8.2f}",
        f"  CUDA graphs   {plan.cuda_graphs_gib:8.2f}",
        f"  overhead      {plan.overhead_gib:8.2f}",
        f"  KV cache      {plan.kv_cache_gib:8.2f}",
        f"  budget        {plan.budget_gib:8.2f}",
    ]
    if plan.engine_args:
        lines += ["", "vllm serve " + shlex.join(plan.engine_args)]
    if plan.rejected:
        width = max(len(candidate) for candidate, _ in plan.rejected)
        lines += ["", f"rejected candidates ({len(plan.rejected)})"]
        lines += [f"  {candidate:<{width}}  {reason}" for candidate, reason in plan.rejected]
    return "\n".join(lines) + "\n"


def render(plan: Plan, output: str) -> str:
    """The plan in the requested format."""
    if output == "table":
        return render_table(plan)
    document = plan.to_status().model_dump(by_alias=True, mode="json")
    if output == "json":
        return json.dumps(document, indent=2) + "\n"
    return yaml.safe_dump(document, sort_keys=False)


def run_plan(args: argparse.Namespace) -> int:
    """Handler of `vlm-operator plan`."""
    try:
        spec = build_spec(args)
        config = _architecture_config(args.architecture_file)
    except PlanInputError as error:
        print(f"vlm-operator plan: {error}", file=sys.stderr)
        return EXIT_USAGE
    plan = plan_visionmodel(spec, architecture_config=config)
    sys.stdout.write(render(plan, args.output))
    return 0 if plan.feasible else EXIT_INFEASIBLE
