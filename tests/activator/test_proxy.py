"""The activator on 127.0.0.1: an in-memory VisionModel stands for the API server (the e2e test
uses the real one), and a local HTTP server for the model's Service."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from activator.kube import ModelState
from activator.proxy import Activator, ActivatorMetrics, Settings, metrics_app, proxy_app


@dataclass
class FakeModel:
    """A VisionModel whose Deployment turns a replica Ready `ready_after` polls after a wake."""

    spec_replicas: int = 0
    wake_on_request: bool = True
    ready_after: int = 2
    wakes: list[int] = field(default_factory=list)
    polls_since_wake: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def state(self) -> ModelState:
        with self.lock:
            if self.spec_replicas > 0:
                self.polls_since_wake += 1
            ready = self.spec_replicas if self.polls_since_wake > self.ready_after else 0
            return ModelState(self.spec_replicas, ready, self.wake_on_request)

    def wake(self) -> bool:
        with self.lock:
            if self.spec_replicas != 0:
                return False
            self.spec_replicas = 1
            self.wakes.append(1)
            return True


async def upstream_app() -> web.Application:
    async def chat(request: web.Request) -> web.Response:
        return web.json_response({"echo": await request.json()})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    return app


async def with_servers(
    model: FakeModel,
    body: Callable[[str, str, Activator], Awaitable[None]],
    wake_timeout: float = 10.0,
    upstream_up: bool = True,
) -> None:
    """Run the upstream and the activator on ephemeral loopback ports around `body`."""
    runners = []
    upstream_url = "http://127.0.0.1:1"
    if upstream_up:
        runner = web.AppRunner(await upstream_app())
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        upstream_url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    settings = Settings(upstream_url, wake_timeout, poll_seconds=0.05, retry_after_seconds=7)
    activator = Activator(model, settings, ActivatorMetrics("team-a", "qwen-vl"))
    urls = []
    for app in (proxy_app(activator), metrics_app(activator)):
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        runners.append(runner)
        urls.append(f"http://127.0.0.1:{runner.addresses[0][1]}")
    try:
        await body(urls[0], urls[1], activator)
    finally:
        await activator.close()
        for runner in runners:
            await runner.cleanup()


async def post(session: aiohttp.ClientSession, url: str, n: int) -> tuple[int, dict[str, str], str]:
    async with session.post(f"{url}/v1/chat/completions", json={"n": n}) as response:
        return response.status, dict(response.headers), await response.text()


async def gauges(session: aiohttp.ClientSession, metrics_url: str) -> dict[str, float]:
    async with session.get(f"{metrics_url}/metrics") as response:
        text = await response.text()
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.labels.get("visionmodel") == "qwen-vl"
    }


def test_requests_at_zero_wake_the_model_once_and_are_forwarded_when_ready() -> None:
    model = FakeModel()

    async def body(proxy: str, metrics: str, activator: Activator) -> None:
        async with aiohttp.ClientSession() as session:
            pending = [asyncio.create_task(post(session, proxy, n)) for n in range(3)]
            await asyncio.sleep(0.02)
            during = await gauges(session, metrics)
            answers = await asyncio.gather(*pending)
            after = await gauges(session, metrics)
        assert during["vlm_activator_held_requests"] == 3
        assert [status for status, _, _ in answers] == [200, 200, 200]
        assert sorted(text for _, _, text in answers) == [
            f'{{"echo": {{"n": {n}}}}}' for n in range(3)
        ]
        assert after["vlm_activator_held_requests"] == 0
        assert after["vlm_activator_requests_total"] == 3
        assert after["vlm_activator_wakeups_total"] == 1

    asyncio.run(with_servers(model, body))
    assert model.wakes == [1]  # one 0 -> 1 step for the three requests, nothing beyond 1


def test_a_model_that_did_not_opt_in_is_never_scaled() -> None:
    model = FakeModel(wake_on_request=False)

    async def body(proxy: str, metrics: str, activator: Activator) -> None:
        async with aiohttp.ClientSession() as session:
            status, _headers, text = await post(session, proxy, 1)
        assert status == 503
        assert "wakeOnRequest is off" in text

    asyncio.run(with_servers(model, body))
    assert model.spec_replicas == 0


def test_after_the_bound_the_answer_is_503_with_retry_after() -> None:
    model = FakeModel(ready_after=10_000)

    async def body(proxy: str, metrics: str, activator: Activator) -> None:
        async with aiohttp.ClientSession() as session:
            status, headers, _text = await post(session, proxy, 1)
            counted = await gauges(session, metrics)
        assert status == 503
        assert headers["Retry-After"] == "7"
        assert counted["vlm_activator_timeouts_total"] == 1

    asyncio.run(with_servers(model, body, wake_timeout=0.5))
    assert model.spec_replicas == 1


def test_a_ready_model_is_not_scaled_and_a_dead_upstream_times_out() -> None:
    model = FakeModel(spec_replicas=2, ready_after=-1)

    async def body(proxy: str, metrics: str, activator: Activator) -> None:
        async with aiohttp.ClientSession() as session:
            status, headers, _text = await post(session, proxy, 1)
        assert status == 503  # the Service never answers: held until the bound
        assert headers["Retry-After"] == "7"

    asyncio.run(with_servers(model, body, wake_timeout=0.5, upstream_up=False))
    assert model.wakes == []
