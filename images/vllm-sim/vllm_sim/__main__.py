"""Command line: `python -m vllm_sim [serve] [MODEL] [vLLM flags] [simulator flags]`.

It takes the `vllm serve` arguments it models (--host, --port, --served-model-name,
--max-num-seqs, --max-model-len) so that an operator-rendered container runs it unchanged, and
ignores the rest. Simulator settings are flags or VLLM_SIM_* environment variables, which a
VisionModel can set through spec.engine.env.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Sequence

from vllm_sim.dcgm import GpuIdentity
from vllm_sim.engine import EngineConfig
from vllm_sim.server import ApiHandler, DcgmHandler, Simulator, SimulatorServer, serve_in_background


def _env(name: str, default: str) -> str:
    return os.environ.get(f"VLLM_SIM_{name}", default)


def parser() -> argparse.ArgumentParser:
    """The accepted arguments; defaults describe one Qwen2.5-VL-7B replica on an H100."""
    p = argparse.ArgumentParser(prog="vllm_sim", description=__doc__.splitlines()[0])
    p.add_argument("words", nargs="*", help="optionally `serve`, then the model")
    p.add_argument("--model", default=None)
    p.add_argument("--served-model-name", nargs="+", default=None)
    p.add_argument("--host", default=_env("HOST", "127.0.0.1"))
    p.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    p.add_argument("--max-num-seqs", type=int, default=16)
    p.add_argument("--max-model-len", type=int, default=32_768)
    sim = p.add_argument_group("simulator")
    sim.add_argument(
        "--prefill-tokens-per-second",
        type=float,
        default=float(_env("PREFILL_TOKENS_PER_SECOND", "6000")),
    )
    sim.add_argument(
        "--decode-tokens-per-second",
        type=float,
        default=float(_env("DECODE_TOKENS_PER_SECOND", "35")),
        help="per running sequence",
    )
    sim.add_argument("--tokens-per-image", type=int, default=int(_env("TOKENS_PER_IMAGE", "1024")))
    sim.add_argument(
        "--full-batch-step-factor",
        type=float,
        default=float(_env("FULL_BATCH_STEP_FACTOR", "1")),
        help="decode step time of a full batch over that of one sequence",
    )
    sim.add_argument("--kv-cache-tokens", type=int, default=int(_env("KV_CACHE_TOKENS", "200000")))
    sim.add_argument(
        "--host-seconds-per-image",
        type=float,
        default=float(_env("HOST_SECONDS_PER_IMAGE", "0.02")),
        help="CPU preprocessing per image, during which the GPU idles",
    )
    sim.add_argument(
        "--startup-seconds",
        type=float,
        default=float(_env("STARTUP_SECONDS", "0")),
        help="503 on every endpoint until the model has loaded",
    )
    sim.add_argument(
        "--default-output-tokens", type=int, default=int(_env("DEFAULT_OUTPUT_TOKENS", "256"))
    )
    sim.add_argument(
        "--max-images-per-request", type=int, default=int(_env("MAX_IMAGES_PER_REQUEST", "8"))
    )
    sim.add_argument(
        "--dcgm-port",
        type=int,
        default=int(_env("DCGM_PORT", "9400")),
        help="the companion DCGM exporter; 0 picks a free port, -1 turns it off",
    )
    sim.add_argument(
        "--dcgm-interval-seconds", type=float, default=float(_env("DCGM_INTERVAL_SECONDS", "30"))
    )
    sim.add_argument(
        "--dcgm-noise-percent", type=float, default=float(_env("DCGM_NOISE_PERCENT", "4"))
    )
    sim.add_argument(
        "--no-dcgm-profiling",
        dest="dcgm_profiling",
        action="store_false",
        default=_env("DCGM_PROFILING", "true") == "true",
        help="publish only DCGM_FI_DEV_GPU_UTIL, as an exporter without profiling fields does",
    )
    sim.add_argument("--gpus", type=int, default=int(_env("GPUS", "1")))
    sim.add_argument("--pod", default=os.environ.get("POD_NAME", "vllm-sim-0"))
    sim.add_argument("--namespace", default=os.environ.get("POD_NAMESPACE", "default"))
    sim.add_argument("--seed", type=int, default=int(_env("SEED", "0")))
    return p  # fmt: skip


def build(args: argparse.Namespace) -> Simulator:
    """The simulator the arguments describe."""
    words = list(args.words)
    if words and words[0] == "serve":
        words.pop(0)
    model = args.model or (words[0] if words else "sim/vision-model")
    served = args.served_model_name[0] if args.served_model_name else model
    config = EngineConfig(
        max_num_seqs=args.max_num_seqs,
        prefill_tokens_per_second=args.prefill_tokens_per_second,
        decode_tokens_per_second=args.decode_tokens_per_second,
        tokens_per_image=args.tokens_per_image,
        kv_cache_tokens=args.kv_cache_tokens,
        host_seconds_per_image=args.host_seconds_per_image,
        max_model_len=args.max_model_len,
        full_batch_step_factor=args.full_batch_step_factor,
    )
    return Simulator(
        config,
        served,
        GpuIdentity(pod=args.pod, namespace=args.namespace),
        startup_seconds=args.startup_seconds,
        default_output_tokens=args.default_output_tokens,
        max_images_per_request=args.max_images_per_request,
        gpus=args.gpus,
        dcgm_interval_seconds=args.dcgm_interval_seconds,
        dcgm_noise_percent=args.dcgm_noise_percent,
        seed=args.seed,
        dcgm_profiling=args.dcgm_profiling,
    )


def main(argv: Sequence[str] | None = None) -> None:
    """Serve until SIGTERM or SIGINT. Prints one `<name> <url>` line per listening server."""
    args, ignored = parser().parse_known_args(argv)
    if ignored:
        print(f"vllm-sim: not modelled, ignored: {' '.join(ignored)}", file=sys.stderr)
    simulator = build(args)
    servers = [SimulatorServer((args.host, args.port), ApiHandler, simulator)]
    if args.dcgm_port >= 0:
        servers.append(SimulatorServer((args.host, args.dcgm_port), DcgmHandler, simulator))
    simulator.start()
    for name, server in zip(("api", "dcgm"), servers, strict=False):
        serve_in_background(server)
        print(f"{name} {server.url}", flush=True)
    stopped = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopped.set())
    stopped.wait()
    for server in servers:
        server.shutdown()
    simulator.stop()


if __name__ == "__main__":
    main()
