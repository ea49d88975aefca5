"""Time the planner over every catalog model x every catalog GPU and compare with a naive baseline.

The baseline is the text-only estimate peers use (weights plus KV cache for prompt and output
tokens, a flat 1 GiB overhead, no images, no profile run). Besides speed, the run counts the
cases where the two disagree: a plan the baseline calls feasible that vLLM would refuse to start
or could not serve the images on, per the memory model.

    python benchmarks/bench_planner.py [--rounds N] [--write-docs]

--write-docs replaces the block between the benchmark markers in docs/sizing.md.
"""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Callable
from pathlib import Path

from vlm_operator.api.v1alpha1 import VisionModelSpec
from vlm_operator.catalog.architectures import catalog_model_ids, resolve_architecture
from vlm_operator.catalog.gpus import gpu_catalog
from vlm_operator.sizing import plan_visionmodel
from vlm_operator.sizing.memory import GIB

DOCS = Path(__file__).resolve().parents[1] / "docs" / "sizing.md"
START_MARKER = "<!-- benchmark:start -->"
END_MARKER = "<!-- benchmark:end -->"
WORKLOAD = {"maxImagesPerRequest": 4, "maxImageSize": {"width": 1280, "height": 1280}}
NAIVE_OVERHEAD_GIB = 1.0
NAIVE_UTILIZATION = 0.9


def sweep_specs() -> list[VisionModelSpec]:
    """One spec per catalog model and catalog GPU, the GPU pinned, the workload fixed."""
    return [
        VisionModelSpec.model_validate(
            {"model": {"id": model_id}, "workload": WORKLOAD, "hardware": {"gpuProduct": product}}
        )
        for model_id in catalog_model_ids()
        for product in (gpu.product for gpu in gpu_catalog())
    ]


def auto_specs() -> list[VisionModelSpec]:
    """One spec per catalog model with gpuProduct auto: each plan weighs the whole GPU catalog."""
    return [
        VisionModelSpec.model_validate({"model": {"id": model_id}, "workload": WORKLOAD})
        for model_id in catalog_model_ids()
    ]


def naive_feasible(spec: VisionModelSpec) -> bool:
    """Text-only estimate: 16-bit weights and text KV under 90% of memory on 1-8 GPUs."""
    architecture = resolve_architecture(spec.model.id)
    gpu = next(g for g in gpu_catalog() if g.product == spec.hardware.gpu_product)
    tokens = spec.workload.prompt_tokens + spec.workload.output_tokens
    kv_per_token = (
        2 * architecture.num_layers * architecture.num_key_value_heads * architecture.head_dim * 2
    )
    for gpus in (1, 2, 4, 8):
        weights = architecture.parameters * 2 / gpus
        kv = spec.workload.concurrency * tokens * kv_per_token / gpus
        if weights + kv + NAIVE_OVERHEAD_GIB * GIB <= gpu.memory_gib * GIB * NAIVE_UTILIZATION:
            return True
    return False


def plans_per_second(plan: Callable[[VisionModelSpec], object], specs: list[VisionModelSpec],
                     rounds: int) -> float:  # fmt: skip
    """Best of `rounds` sweeps, in plans per second."""
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        for spec in specs:
            plan(spec)
        best = min(best, time.perf_counter() - started)
    return len(specs) / best


def report(rounds: int) -> str:
    """The benchmark results as a markdown block."""
    specs = sweep_specs()
    plans = [plan_visionmodel(spec) for spec in specs]
    feasible = sum(plan.feasible for plan in plans)
    stalls: dict[str, int] = {}
    for plan in plans:
        if plan.stall_reason:
            stalls[plan.stall_reason] = stalls.get(plan.stall_reason, 0) + 1
    naive = [naive_feasible(spec) for spec in specs]
    optimistic = sum(
        1
        for plan, accepted in zip(plans, naive, strict=True)
        if accepted and plan.stall_reason == "InsufficientGPUMemory"
    )
    planner_rate = plans_per_second(plan_visionmodel, specs, rounds)
    naive_rate = plans_per_second(naive_feasible, specs, rounds)
    auto_rate = plans_per_second(plan_visionmodel, auto_specs(), rounds)
    stall_text = ", ".join(f"{count} {reason}" for reason, count in sorted(stalls.items()))
    return "\n".join(
        [
            f"Sweep: {len(catalog_model_ids())} catalog models x {len(gpu_catalog())} catalog "
            f"GPUs = {len(specs)} plans, GPU pinned, 4 images of 1280x1280, defaults otherwise "
            f"(best of {rounds} rounds, Python {platform.python_version()}, "
            f"{platform.machine()}).",
            "",
            "| estimator | plans/s | time per plan |",
            "|---|---|---|",
            f"| planner (full memory model, every candidate, suggestions) | {planner_rate:,.0f} "
            f"| {1000 / planner_rate:.2f} ms |",
            f"| naive text-only baseline | {naive_rate:,.0f} | {1000 / naive_rate:.3f} ms |",
            f"| planner, gpuProduct auto (all {len(gpu_catalog())} GPUs weighed per plan) "
            f"| {auto_rate:,.0f} | {1000 / auto_rate:.2f} ms |",
            "",
            f"Outcomes: {feasible} feasible, {stall_text}. The naive baseline accepts "
            f"{sum(naive)} of the {len(specs)}; {optimistic} of those are plans the memory model "
            "refuses for lack of memory (images, profile run, CUDA graphs or KV cache for the "
            "declared concurrency): deployments that would crash-loop or not hold the workload.",
        ]
    )


def write_docs(block: str) -> None:
    """Replace the benchmark block of docs/sizing.md."""
    text = DOCS.read_text(encoding="utf-8")
    head, _, rest = text.partition(START_MARKER)
    _, _, tail = rest.partition(END_MARKER)
    DOCS.write_text(f"{head}{START_MARKER}\n{block}\n{END_MARKER}{tail}", encoding="utf-8")


def main() -> None:
    """Run the benchmark and print (or write) the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="sweeps to time; the best counts")
    parser.add_argument("--write-docs", action="store_true", help="update docs/sizing.md")
    args = parser.parse_args()
    block = report(args.rounds)
    print(block)
    if args.write_docs:
        write_docs(block)


if __name__ == "__main__":
    main()
