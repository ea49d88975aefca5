"""Command line: `python -m activator --visionmodel NS/NAME [--upstream URL] [...]`."""

from __future__ import annotations

import argparse
import asyncio
import signal
from collections.abc import Sequence

from aiohttp import web

from activator.kube import KubernetesTarget
from activator.proxy import Activator, ActivatorMetrics, Settings, metrics_app, proxy_app


def parser() -> argparse.ArgumentParser:
    """The accepted arguments."""
    p = argparse.ArgumentParser(prog="activator", description=__doc__.splitlines()[0])
    p.add_argument("--visionmodel", required=True, help="NAMESPACE/NAME")
    p.add_argument("--upstream", help="default http://NAME.NAMESPACE.svc:8000")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--metrics-port", type=int, default=9090)
    p.add_argument("--kubeconfig", help="default: the pod's service account")
    p.add_argument(
        "--wake-timeout-seconds",
        type=float,
        default=600.0,
        help="answer 503 after this; set it above the plan's expected start time",
    )
    p.add_argument("--poll-seconds", type=float, default=1.0)
    p.add_argument("--retry-after-seconds", type=int, default=30)
    return p


async def serve(args: argparse.Namespace) -> None:
    """Run both servers until SIGTERM or SIGINT."""
    namespace, _, name = args.visionmodel.partition("/")
    if not namespace or not name:
        raise SystemExit("--visionmodel must be NAMESPACE/NAME")
    settings = Settings(
        upstream=args.upstream or f"http://{name}.{namespace}.svc:8000",
        wake_timeout_seconds=args.wake_timeout_seconds,
        poll_seconds=args.poll_seconds,
        retry_after_seconds=args.retry_after_seconds,
    )
    activator = Activator(
        KubernetesTarget(namespace, name, args.kubeconfig),
        settings,
        ActivatorMetrics(namespace, name),
    )
    runners = [web.AppRunner(proxy_app(activator)), web.AppRunner(metrics_app(activator))]
    for runner, port in zip(runners, (args.port, args.metrics_port), strict=True):
        await runner.setup()
        await web.TCPSite(runner, args.host, port).start()
        print(f"listening http://{args.host}:{port}", flush=True)
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopped.set)
    await stopped.wait()
    await activator.close()
    for runner in runners:
        await runner.cleanup()


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the arguments and serve."""
    asyncio.run(serve(parser().parse_args(argv)))


if __name__ == "__main__":
    main()
