"""Rendering of the vLLM Deployment, Service, PodDisruptionBudget and PodMonitor."""

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from builders import plan, spec
from vlm_operator.api.config import OperatorConfig
from vlm_operator.render.labels import selector_string
from vlm_operator.render.workload import (
    RenderInput,
    render_children,
    render_deployment,
    shm_size_gib,
    startup_seconds,
)

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "render"
CONFIG = OperatorConfig(vllm_image="registry.example/vllm-openai:v0.32.0", vllm_version="0.32.0")


def source(**spec_overrides: Any) -> RenderInput:
    return RenderInput("qwen-vl", "team-a", "uid-1234", spec(**spec_overrides), plan(), CONFIG)


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers: list[dict[str, Any]] = deployment["spec"]["template"]["spec"]["containers"]
    return containers[0]


def test_children_match_golden_file() -> None:
    rendered = yaml.safe_dump_all(render_children(source(), pod_monitor=True), sort_keys=True)
    golden = GOLDEN / "qwen-vl.yaml"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        golden.write_text(rendered, encoding="utf-8")
    assert rendered == golden.read_text(encoding="utf-8"), "run UPDATE_GOLDEN=1 pytest to refresh"


def test_gpu_requests_equal_gpus_per_replica() -> None:
    rendered = RenderInput(
        "big", "ns", "uid", spec(), plan(gpus_per_replica=4, tensor_parallel_size=4), CONFIG
    )
    resources = container(render_deployment(rendered))["resources"]
    assert resources["requests"]["nvidia.com/gpu"] == 4
    assert resources["limits"]["nvidia.com/gpu"] == 4


def test_command_and_args() -> None:
    deployment = render_deployment(
        source(engine={"extraArgs": ["--enable-prefix-caching"], "image": "mine:1"})
    )
    vllm = container(deployment)
    assert vllm["command"] == ["vllm", "serve"]
    assert vllm["args"] == [
        "Qwen/Qwen2.5-VL-7B-Instruct",
        "--port",
        "8000",
        "--enable-prefix-caching",
    ]
    assert vllm["image"] == "mine:1"


def test_pinned_image_comes_from_config() -> None:
    assert container(render_deployment(source()))["image"] == CONFIG.vllm_image


def test_token_comes_from_secret_reference() -> None:
    deployment = render_deployment(
        source(model={"id": "google/gemma-3-27b-it", "tokenSecretRef": {"name": "hf"}})
    )
    env = {item["name"]: item for item in container(deployment)["env"]}
    assert env["HF_TOKEN"]["valueFrom"] == {"secretKeyRef": {"name": "hf", "key": "token"}}


def test_cache_is_pvc_when_given_else_bounded_empty_dir() -> None:
    with_pvc = render_deployment(
        source(model={"id": "a/b", "cache": {"persistentVolumeClaim": "weights"}})
    )
    volumes = {v["name"]: v for v in with_pvc["spec"]["template"]["spec"]["volumes"]}
    assert volumes["model-cache"]["persistentVolumeClaim"] == {"claimName": "weights"}
    default = render_deployment(source())
    volumes = {v["name"]: v for v in default["spec"]["template"]["spec"]["volumes"]}
    assert volumes["model-cache"]["emptyDir"] == {"sizeLimit": "200Gi"}
    assert volumes["shm"]["emptyDir"]["medium"] == "Memory"


@pytest.mark.parametrize(("tp", "expected"), [(1, 2), (2, 8), (4, 16), (8, 32), (16, 32)])
def test_shared_memory_grows_with_tensor_parallelism(tp: int, expected: int) -> None:
    assert shm_size_gib(tp) == expected


def test_startup_budget_grows_with_weights_and_shrinks_with_a_warm_cache() -> None:
    small = startup_seconds(source())
    large = startup_seconds(
        RenderInput("q", "n", "u", spec(), plan(gpus_per_replica=8, tensor_parallel_size=8), CONFIG)
    )
    warm = startup_seconds(source(model={"id": "a/b", "cache": {"persistentVolumeClaim": "w"}}))
    assert warm < small < large
    # 15.4 GiB at 100 MiB/s plus 180 s of engine init, doubled.
    assert small == pytest.approx(2 * (15.4 * 1024 / 100 + 180), abs=1)


def test_probes_and_rollout_keep_capacity() -> None:
    deployment = render_deployment(source())
    vllm = container(deployment)
    startup = vllm["startupProbe"]
    assert startup["httpGet"] == {"path": "/health", "port": "http"}
    assert startup["periodSeconds"] * startup["failureThreshold"] >= startup_seconds(source())
    assert deployment["spec"]["progressDeadlineSeconds"] > startup_seconds(source())
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_scheduling_targets_the_planned_gpu() -> None:
    deployment = render_deployment(
        source(hardware={"nodeSelector": {"pool": "vlm"}, "tolerations": [{"key": "spot"}]})
    )
    pod = deployment["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"pool": "vlm", "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod[
        "tolerations"
    ]
    assert {"key": "spot"} in pod["tolerations"]


def test_every_child_is_owned_and_labelled() -> None:
    for child in render_children(source(), pod_monitor=True):
        metadata = child["metadata"]
        assert metadata["ownerReferences"][0]["uid"] == "uid-1234"
        assert metadata["ownerReferences"][0]["controller"] is True
        assert metadata["labels"]["app.kubernetes.io/managed-by"] == "vlm-operator"
        assert metadata["labels"]["app.kubernetes.io/instance"] == "qwen-vl"


def test_pod_monitor_only_when_asked() -> None:
    kinds = [child["kind"] for child in render_children(source(), pod_monitor=False)]
    assert kinds == ["Service", "PodDisruptionBudget", "Deployment"]


def test_selector_string_matches_pod_labels() -> None:
    deployment = render_deployment(source())
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    for pair in selector_string("qwen-vl").split(","):
        key, value = pair.split("=")
        assert labels[key] == value
