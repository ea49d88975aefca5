"""The proxy: hold a request while the model is at zero, wake it, forward once a replica is Ready.

One activator fronts one VisionModel. A request that finds no Ready replica is held; the first
held request raises the scale subresource from 0 to 1 (only that step: the autoscaler owns 1 <-> N
and N -> 0), and every held request is forwarded once the Deployment reports a Ready replica and
the upstream Service answers. After `wake_timeout_seconds` a held request gets 503 with
Retry-After. Models that did not set spec.scaling.wakeOnRequest are never scaled.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

from activator.kube import ModelState, ScaleTarget

HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding",
     "upgrade", "host", "content-length"}
)  # fmt: skip


@dataclass(frozen=True)
class Settings:
    """How the activator waits."""

    upstream: str
    """The model's Service, e.g. http://qwen-vl.team-a.svc:8000."""
    wake_timeout_seconds: float = 600.0
    poll_seconds: float = 1.0
    retry_after_seconds: int = 30


class ActivatorMetrics:
    """Request rate and held requests, labelled with the VisionModel."""

    def __init__(self, namespace: str, name: str) -> None:
        self.registry = CollectorRegistry()
        labels = {"visionmodel_namespace": namespace, "visionmodel": name}
        names = tuple(labels)

        def counter(metric: str, documentation: str) -> Counter:
            return Counter(metric, documentation, names, registry=self.registry)

        self.requests = counter("vlm_activator_requests", "Requests received.").labels(**labels)
        self.wakeups = counter(
            "vlm_activator_wakeups", "Times the activator raised replicas from 0 to 1."
        ).labels(**labels)
        self.timeouts = counter(
            "vlm_activator_timeouts", "Requests answered 503 after the wake timeout."
        ).labels(**labels)
        self.held = Gauge(
            "vlm_activator_held_requests",
            "Requests waiting for a Ready replica.",
            names,
            registry=self.registry,
        ).labels(**labels)


class NotWakeableError(Exception):
    """The VisionModel is at zero and did not opt in to waking on request."""


class Activator:
    """The proxy's state: its target, its settings and the one wake-up in progress."""

    def __init__(self, target: ScaleTarget, settings: Settings, metrics: ActivatorMetrics) -> None:
        self.target = target
        self.settings = settings
        self.metrics = metrics
        self._ready = asyncio.Event()
        self._watch: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None

    async def _state(self) -> ModelState:
        return await asyncio.to_thread(self.target.state)

    async def _watch_until_ready(self) -> None:
        """Poll the API server, waking the model if it is at zero, until a replica is Ready."""
        while True:
            state = await self._state()
            if state.ready_replicas > 0:
                self._ready.set()
                return
            waking = state.spec_replicas == 0 and state.wake_on_request
            if waking and await asyncio.to_thread(self.target.wake):
                self.metrics.wakeups.inc()
            await asyncio.sleep(self.settings.poll_seconds)

    async def wait_ready(self, deadline: float) -> None:
        """Return once a replica is Ready; TimeoutError at the deadline."""
        state = await self._state()
        if state.ready_replicas > 0:
            return
        if state.spec_replicas == 0 and not state.wake_on_request:
            raise NotWakeableError(
                "the VisionModel is at 0 replicas and spec.scaling.wakeOnRequest is off"
            )
        self._ready.clear()
        if self._watch is None or self._watch.done():
            self._watch = asyncio.create_task(self._watch_until_ready())
        await asyncio.wait_for(asyncio.shield(self._ready.wait()), deadline - time.monotonic())

    async def forward(self, request: web.Request, body: bytes, deadline: float) -> web.Response:
        """Send the request upstream, retrying while the Service has no serving endpoint yet."""
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None))
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        url = self.settings.upstream.rstrip("/") + request.path_qs
        while True:
            try:
                async with self._session.request(
                    request.method, url, headers=headers, data=body
                ) as upstream:
                    payload = await upstream.read()
                    if upstream.status != 503 or time.monotonic() >= deadline:
                        kept = {
                            k: v for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP
                        }
                        return web.Response(status=upstream.status, body=payload, headers=kept)
            except aiohttp.ClientConnectionError:
                if time.monotonic() >= deadline:
                    raise TimeoutError(
                        "the upstream did not answer before the wake timeout"
                    ) from None
            await asyncio.sleep(min(self.settings.poll_seconds, 0.5))

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Every proxied request."""
        self.metrics.requests.inc()
        body = await request.read()
        deadline = time.monotonic() + self.settings.wake_timeout_seconds
        self.metrics.held.inc()
        try:
            await self.wait_ready(deadline)
            return await self.forward(request, body, deadline)
        except NotWakeableError as error:
            return web.json_response({"error": str(error)}, status=503)
        except TimeoutError:
            self.metrics.timeouts.inc()
            return web.json_response(
                {"error": "no replica became ready in time; retry later"},
                status=503,
                headers={"Retry-After": str(self.settings.retry_after_seconds)},
            )
        finally:
            self.metrics.held.dec()

    async def metrics_page(self, request: web.Request) -> web.Response:
        """The activator's own /metrics."""
        return web.Response(
            body=generate_latest(self.metrics.registry),
            headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"},
        )

    async def close(self) -> None:
        """Stop watching and close the upstream connections."""
        if self._watch is not None:
            self._watch.cancel()
        if self._session is not None:
            await self._session.close()


def proxy_app(activator: Activator) -> web.Application:
    """Every path is proxied."""
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_route("*", "/{path:.*}", activator.handle)
    return app


def metrics_app(activator: Activator) -> web.Application:
    """/metrics on its own port, so the model's own /metrics stays reachable through the proxy."""
    app = web.Application()
    app.router.add_get("/metrics", activator.metrics_page)
    return app
