"""The plan against the real engine: vLLM's CPU build runs the Deployment's rendered container.

Per tiny model (e2e/engine/tiny_models.py), described to the operator only by its config.json in
a ConfigMap (spec.model.architecture.configMapRef): the operator plans it on the fake GPU nodes,
the Deployment's pod is mirrored into `vllm serve` on 127.0.0.1 (engine_harness.py), and the
engine's own answers are compared with the plan: /health, images of the declared box accepted,
prompt tokens per image, the image limit, and the profile and KV cache lines of its start-up log
(kept in the artifacts). The last test scales the VisionModel on the engine's real metrics,
scraped by Debian's Prometheus. One engine runs at a time and is reused while its container is
unchanged.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from engine_harness import (
    SUBSTITUTIONS,
    EnginePod,
    EngineSlot,
    checkpoint_config,
    engine_command,
    tiny_checkpoints,
)
from harness import (
    OperatorProcess,
    apply_manifest,
    get_object,
    list_objects,
    wait_for,
    wait_ready,
)
from prometheus_harness import Prometheus, SimulatedPod
from vlm_operator.api.config import DEFAULT_EXTRA_ARGS_ALLOWED
from vlm_operator.api.v1alpha1 import VisionModelSpec
from vlm_operator.catalog.architectures import resolve_architecture
from vlm_operator.sizing.memory import profile_run
from vlm_operator.sizing.planner import derive_demand

pytestmark = [
    pytest.mark.engine,
    # The tiny models' small KV cache (--num-gpu-blocks-override) is a flag this installation
    # allows; the default allow-list refuses it.
    pytest.mark.operator_env(
        VLM_OPERATOR_EXTRA_ARGS_ALLOWED=",".join(
            [*DEFAULT_EXTRA_ARGS_ALLOWED, "--num-gpu-blocks-override"]
        )
    ),
]

NAME = "tiny-vl"
MAX_NUM_SEQS = 2
KV_BLOCKS = 32
"""--num-gpu-blocks-override: a KV cache small enough for its usage to move under load."""
CPU_BLOCK_SIZE = 128
"""Tokens per KV block on vLLM's CPU platform when none is set (vllm/platforms/cpu.py; CUDA
uses 16, the plan's KV_BLOCK_SIZE)."""


@dataclass(frozen=True)
class TinyModel:
    """A tiny checkpoint and the workload its VisionModel declares."""

    name: str
    images: int
    width: int
    height: int
    smaller: tuple[int, int]
    """An image inside the declared box, smaller on both sides."""

    @property
    def model_id(self) -> str:
        """spec.model.id: outside the catalog, so only the ConfigMap describes it."""
        return f"tiny/{self.name}"


MODELS = [
    TinyModel("qwen2.5-vl", images=2, width=640, height=480, smaller=(320, 240)),
    TinyModel("idefics3", images=2, width=640, height=480, smaller=(300, 200)),
]


def spec_of(model: TinyModel, **extra: Any) -> dict[str, Any]:
    """The VisionModel spec of a tiny model: its config.json by ConfigMap, the declared images."""
    return {
        "model": {
            "id": model.model_id,
            "architecture": {"configMapRef": {"name": f"{NAME}-config"}},
        },
        "workload": {
            "maxImagesPerRequest": model.images,
            "maxImageSize": {"width": model.width, "height": model.height},
            "promptTokens": 64,
            "outputTokens": 64,
            "concurrency": MAX_NUM_SEQS,
        },
        "hardware": {"gpuProduct": "auto", "maxGpusPerReplica": 1},
        "engine": {
            "maxNumSeqs": MAX_NUM_SEQS,
            "extraArgs": ["--num-gpu-blocks-override", str(KV_BLOCKS)],
        },
        "replicas": 1,
        **extra,
    }


def deploy(namespace: str, model: TinyModel, **extra: Any) -> dict[str, Any]:
    """Apply the ConfigMap and the VisionModel; the running pod's container once Ready."""
    config = checkpoint_config(model.name)
    apply_manifest(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": f"{NAME}-config", "namespace": namespace},
            "data": {"config.json": json.dumps(config)},
        }
    )
    apply_manifest(
        {
            "apiVersion": "vlm-operator.io/v1alpha1",
            "kind": "VisionModel",
            "metadata": {"name": NAME, "namespace": namespace},
            "spec": spec_of(model, **extra),
        }
    )
    wait_ready(namespace, NAME, timeout=120)
    pods = list_objects("pod", namespace, f"vlm-operator.io/visionmodel={NAME}")
    running = [pod for pod in pods if pod["status"].get("phase") == "Running"]
    assert running, f"no running pod of {NAME}: {[p['status'] for p in pods]}"
    container: dict[str, Any] = running[0]["spec"]["containers"][0]
    return container


def start_engine(engines: EngineSlot, container: dict[str, Any], model: TinyModel) -> EnginePod:
    """The engine for the container, and every start so far recorded in the artifacts."""
    engine = engines.get(container, tiny_checkpoints() / model.name, model.name)
    artifacts = engines.workdir
    starts = [{"model": name, "secondsToHealth": round(took, 1)} for name, took in engines.starts]
    (artifacts / "engine-starts.json").write_text(json.dumps(starts, indent=1))
    return engine


def plan_of(namespace: str) -> dict[str, Any]:
    """status.plan of the VisionModel."""
    body = get_object("visionmodel", NAME, namespace)
    assert body is not None
    plan: dict[str, Any] = body["status"]["plan"]
    return plan


@pytest.fixture(scope="session")
def engines(cluster: Path) -> Iterator[EngineSlot]:
    """The engine slot; its logs and the comparisons go to the cluster's artifacts/engine."""
    slot = EngineSlot(cluster.parent / "artifacts" / "engine")
    yield slot
    slot.stop()


@pytest.fixture(scope="module", params=MODELS, ids=[model.name for model in MODELS])
def model(request: pytest.FixtureRequest) -> TinyModel:
    """Module-scoped, so that pytest runs every test of one model before the next model."""
    tiny: TinyModel = request.param
    return tiny


@dataclass
class Served:
    """A tiny model planned by the operator and running in the real engine."""

    model: TinyModel
    plan: dict[str, Any]
    container: dict[str, Any]
    engine: EnginePod
    artifacts: Path
    """Where the engine's start-up lines and the comparisons are kept (.cluster/artifacts)."""


@pytest.fixture
def served(
    model: TinyModel, namespace: str, operator: OperatorProcess, engines: EngineSlot
) -> Served:
    container = deploy(namespace, model)
    engine = start_engine(engines, container, model)
    return Served(model, plan_of(namespace), container, engine, engines.workdir)


def replicas_of(namespace: str) -> int:
    body = get_object("visionmodel", NAME, namespace) or {}
    return int(body.get("spec", {}).get("replicas", 0))


def autoscaling_reason(namespace: str) -> str:
    body = get_object("visionmodel", NAME, namespace) or {}
    return str(body.get("status", {}).get("autoscaling", {}).get("reason", ""))


def load(engine: EnginePod, workers: int, stop: threading.Event, seconds: float) -> list[int]:
    """Closed-loop image requests from `workers` threads until `stop` or `seconds` pass; the
    HTTP status of each. Bounded in time and in count (at most 100 per worker). Every image has
    its own shade, so requests share no prefix-cache blocks and hold their own KV cache."""
    deadline = time.monotonic() + seconds
    statuses: list[int] = []

    def worker(first_shade: int) -> None:
        for shade in range(first_shade, first_shade + 100):
            if stop.is_set() or time.monotonic() > deadline:
                return
            answer = engine.chat([(640, 480)], max_tokens=64, ignore_eos=True, shade=shade)
            statuses.append(answer.status)

    threads = [
        threading.Thread(target=worker, args=(1000 + 100 * index,), daemon=True)
        for index in range(workers)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + 180)
    return statuses


class FleetMirror:
    """Prometheus targets for every running pod of the VisionModel: the first pod is the real
    engine; pods a scale-up adds are idle simulators (one engine at a time), so that every ready
    pod reports, as the autoscaler requires before it scales down."""

    def __init__(
        self, namespace: str, engine: EnginePod, prometheus: Prometheus, workdir: Path
    ) -> None:
        self.namespace, self.engine, self.prometheus, self.workdir = (
            namespace,
            engine,
            prometheus,
            workdir,
        )
        self.engine_pod = ""
        self.simulated: dict[str, SimulatedPod] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> FleetMirror:
        self.sync()
        self._thread.start()
        return self

    def __exit__(self, *error: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        for pod in self.simulated.values():
            pod.stop()

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            self.sync()

    def sync(self) -> None:
        """Start simulators for new pods, stop those of deleted pods, rewrite the targets."""
        pods = list_objects("pod", self.namespace, f"vlm-operator.io/visionmodel={NAME}")
        running = sorted(
            (pod["metadata"]["creationTimestamp"], pod["metadata"]["name"])
            for pod in pods
            if pod["status"].get("phase") == "Running"
            and "deletionTimestamp" not in pod["metadata"]
        )
        names = {name for _, name in running}
        if not self.engine_pod and running:
            self.engine_pod = running[0][1]
        for name in names - self.simulated.keys() - {self.engine_pod}:
            pod = SimulatedPod(
                name, self.namespace, self.workdir, model_name=self.engine.served_name
            )
            pod.start()
            self.simulated[name] = pod
        for name in self.simulated.keys() - names:
            self.simulated.pop(name).stop()
        labels = {"namespace": self.namespace, "pod": self.engine_pod}
        targets = [(self.engine.metrics_target, labels)]
        targets += [(pod.metrics_target, pod.labels) for pod in self.simulated.values()]
        self.prometheus.set_targets(targets)


def test_queue_on_the_real_engine_scales_up_and_back_down(
    namespace: str, operator: OperatorProcess, engines: EngineSlot, tmp_path: Path
) -> None:
    model = MODELS[0]
    timeline: list[dict[str, Any]] = []
    with Prometheus(tmp_path / "prometheus") as prometheus:
        scaling = {
            "minReplicas": 1,
            "maxReplicas": 3,
            "warmReplicas": 0,
            "queueDepthTarget": 2,
            "scaleDownDelaySeconds": 20,
            "metricsSource": {"prometheus": {"url": prometheus.url}},
        }
        container = deploy(namespace, model, scaling=scaling)
        engine = start_engine(engines, container, model)
        selector = f'namespace="{namespace}"'
        waiting = f"sum(vllm:num_requests_waiting{{{selector}}})"
        with FleetMirror(namespace, engine, prometheus, tmp_path) as mirror:
            prometheus.wait_for_series(waiting, 60)
            wait_for(lambda: "steady at 1" in autoscaling_reason(namespace), 90, "idle metrics")
            started = time.monotonic()
            sampling = threading.Event()

            def sample() -> None:
                while not sampling.wait(2.0):
                    point: dict[str, Any] = {"t": round(time.monotonic() - started, 1)}
                    for key, metric in (
                        ("waiting", "vllm:num_requests_waiting"),
                        ("running", "vllm:num_requests_running"),
                        ("kvCacheUsage", "vllm:kv_cache_usage_perc"),
                    ):
                        pod = f'pod="{mirror.engine_pod}"'
                        answer = prometheus.query(f"max({metric}{{{selector},{pod}}})")
                        point[key] = answer[0][1] if answer else None
                    point["replicas"] = replicas_of(namespace)
                    point["reason"] = autoscaling_reason(namespace)
                    timeline.append(point)

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            stop = threading.Event()
            statuses: list[int] = []
            sender = threading.Thread(
                target=lambda: statuses.extend(load(engine, 8, stop, 150.0)), daemon=True
            )
            try:
                sender.start()
                prometheus.wait_for_series(waiting, 60, lambda s: s[0][1] >= 2)
                wait_for(lambda: replicas_of(namespace) >= 2, 120, "a scale-up on the real queue")
                stop.set()
                sender.join(240)
                timeline.append({"t": round(time.monotonic() - started, 1), "loadStopped": True})
                wait_for(lambda: replicas_of(namespace) == 1, 150, "the scale-down after the load")
            finally:
                stop.set()
                sampling.set()
                sampler.join(10)
                (engines.workdir / "autoscaling-timeline.json").write_text(
                    json.dumps(timeline, indent=1)
                )
    assert statuses
    assert set(statuses) == {200}, statuses
    assert max(point.get("waiting") or 0 for point in timeline) >= 2, timeline
    # Two running requests of ~480 tokens in 128-token blocks hold 8 of the 32 blocks.
    assert max(point.get("kvCacheUsage") or 0 for point in timeline) >= 0.1, timeline
    events = list_objects("event", namespace, field_selector="involvedObject.kind=VisionModel")
    reasons = {event["reason"] for event in events}
    assert {"ScaledUp", "ScaledDown"} <= reasons, reasons


def test_only_the_listed_substitutions_are_made(served: Served) -> None:
    container, engine = served.container, served.engine
    command, env = engine_command(container, tiny_checkpoints() / served.model.name, engine.port)
    rendered = [*container["command"], *container["args"]]
    # Position by position: the CLI, the model and the port value differ; nothing is dropped.
    assert len(command) == len(rendered) + 2
    changed = {
        i for i, (ran, wrote) in enumerate(zip(command, rendered, strict=False)) if ran != wrote
    }
    port_value = rendered.index("--port") + 1
    assert changed == {0, 2, port_value}
    assert command[0].endswith("/bin/vllm")
    assert command[1] == "serve"
    assert command[2] == str(tiny_checkpoints() / served.model.name)
    assert command[-2:] == ["--host", "127.0.0.1"]
    assert {"--port", "--host"} <= SUBSTITUTIONS.keys()
    replaced_env = {name for name in engine.env if engine.env[name] != env.get(name)}
    assert replaced_env <= SUBSTITUTIONS.keys()
    assert served.plan["engineArgs"] == container["args"][: len(served.plan["engineArgs"])]


def test_health_answers_with_the_planned_arguments(served: Served) -> None:
    engine = served.engine
    assert engine.health_status() == 200
    listed = engine.models()
    assert [entry["id"] for entry in listed] == [served.model.model_id]
    assert listed[0]["max_model_len"] == served.plan["maxModelLen"]


def test_images_of_the_declared_box_cost_the_planned_tokens(served: Served) -> None:
    model, engine = served.model, served.engine
    text_only = engine.chat([])
    assert text_only.status == 200, text_only.error
    largest = engine.chat([(model.width, model.height)])
    smaller = engine.chat([model.smaller])
    assert largest.status == 200, largest.error
    assert smaller.status == 200, smaller.error
    measured = largest.prompt_tokens - text_only.prompt_tokens
    assert measured == served.plan["tokensPerDeclaredImage"], (
        f"{model.name}: vLLM counts {measured} prompt tokens for a {model.width}x{model.height} "
        f"image, the plan {served.plan['tokensPerDeclaredImage']}"
    )
    # The costliest image inside the box, as the plan names it, costs what the plan sized for.
    width, height = (int(side) for side in served.plan["worstCaseImage"].split("x"))
    worst = engine.chat([(width, height)])
    assert worst.status == 200, worst.error
    assert worst.prompt_tokens - text_only.prompt_tokens == served.plan["tokensPerImage"], (
        f"{model.name}: vLLM counts {worst.prompt_tokens - text_only.prompt_tokens} prompt "
        f"tokens for the worst case {width}x{height}, the plan {served.plan['tokensPerImage']}"
    )
    full = engine.chat([(model.width, model.height)] * model.images)
    assert full.status == 200, full.error
    assert full.prompt_tokens - text_only.prompt_tokens == model.images * measured


def test_one_image_more_than_declared_is_refused(served: Served) -> None:
    model = served.model
    answer = served.engine.chat([model.smaller] * (model.images + 1))
    assert answer.status == 400, answer
    assert f"At most {model.images} image(s)" in answer.error


def test_the_profile_vllm_logs_is_the_one_the_plan_describes(served: Served) -> None:
    profile = served.engine.startup_profile()
    artifacts = served.artifacts
    (artifacts / f"{served.model.name}-startup.log").write_text("\n".join(profile.lines) + "\n")
    # What the planner says vLLM will profile for this spec, from the plan's own arithmetic.
    spec = VisionModelSpec.model_validate(spec_of(served.model))
    architecture = resolve_architecture(
        spec.model.id, spec.model.architecture, checkpoint_config(served.model.name)
    )
    demand = derive_demand(architecture, spec)
    args = served.plan["engineArgs"]
    batched = int(args[args.index("--max-num-batched-tokens") + 1])
    planned = profile_run(
        batched,
        demand.max_num_seqs,
        demand.max_model_len,
        demand.item_features,
        demand.items_per_prompt,
    )
    (artifacts / f"{served.model.name}-plan.json").write_text(
        json.dumps(
            {
                "engine": {
                    "encoderBudgetTokens": profile.encoder_budget_tokens,
                    "profiledItems": profile.profiled_items,
                    "kvCacheTokens": profile.kv_cache_tokens,
                },
                "plan": {
                    "encoderBudgetTokens": planned.encoder_cache_tokens,
                    "profiledItems": planned.vision_tokens // demand.item_features,
                    "itemFeatures": demand.item_features,
                    "maxModelLen": served.plan["maxModelLen"],
                },
            },
            indent=2,
        )
    )
    assert profile.profiled_modality == "image"
    assert profile.encoder_budget_tokens == planned.encoder_cache_tokens
    assert profile.profiled_items == planned.vision_tokens // demand.item_features
    assert profile.kv_cache_tokens == KV_BLOCKS * CPU_BLOCK_SIZE
