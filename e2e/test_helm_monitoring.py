"""The chart's dashboard and rules against real series: Debian's Prometheus scrapes the operator
(running with the chart's identity) and a simulated vLLM pod, loads the chart's rendered rules,
and answers every dashboard query and the alerts' expressions with the labels they join on."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from chart_harness import CHART_DIR, find, render
from harness import OperatorProcess, apply_manifest, visionmodel, wait_condition, wait_ready
from prometheus_harness import Prometheus, SimulatedPod

TARGET_TIMEOUT = 30.0
"""Prometheus hands new file_sd targets to its scrape loops about every 5 s, then scrapes each
1 s."""
OPERATOR_JOB = {"job": "vlm-operator-metrics", "namespace": "vlm-system"}
"""Target labels the chart's ServiceMonitor gives the operator's endpoint."""


class RulesPrometheus(Prometheus):
    """The project's test Prometheus, evaluating the chart's rendered rules every second."""

    def __init__(self, workdir: Path, rules: dict[str, Any]) -> None:
        super().__init__(workdir)
        self.rules_path = workdir / "rules.yaml"
        fast = {"groups": [{**group, "interval": "1s"} for group in rules["groups"]]}
        workdir.mkdir(parents=True, exist_ok=True)
        self.rules_path.write_text(yaml.safe_dump(fast), encoding="utf-8")

    def config(self) -> dict[str, Any]:
        return {**super().config(), "rule_files": [str(self.rules_path)]}


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[RulesPrometheus]:
    rule = find(render({"prometheusRule": {"enabled": True}}), "PrometheusRule")
    with RulesPrometheus(tmp_path / "prometheus", rule["spec"]) as server:
        yield server


def dashboard_queries(namespace: str, name: str) -> dict[str, list[str]]:
    """Panel title -> its queries, with Grafana's variables substituted."""
    dashboard = json.loads((CHART_DIR / "files" / "dashboard.json").read_text(encoding="utf-8"))
    substitutions = {"$namespace": namespace, "$visionmodel": name, "$__rate_interval": "30s"}
    queries: dict[str, list[str]] = {}
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            query = target["expr"]
            for variable, value in substitutions.items():
                query = query.replace(variable, value)
            queries.setdefault(panel["title"], []).append(query)
    return queries


def alert_expression(alert: str) -> str:
    rule = find(render({"prometheusRule": {"enabled": True}}), "PrometheusRule")
    for group in rule["spec"]["groups"]:
        for item in group["rules"]:
            if item.get("alert") == alert:
                return str(item["expr"])
    raise AssertionError(f"no alert {alert}")


def test_dashboard_and_alert_queries_answer_from_the_operator_and_vllm(
    namespace: str, operator: OperatorProcess, prometheus: RulesPrometheus, tmp_path: Path
) -> None:
    apply_manifest(
        visionmodel(namespace, scaling={"minReplicas": 1, "maxReplicas": 3, "warmReplicas": 1})
    )
    wait_ready(namespace)
    apply_manifest(
        visionmodel(
            namespace,
            "too-big",
            model={"id": "Qwen/Qwen2.5-VL-72B-Instruct"},
            hardware={"gpuProduct": "Tesla-T4", "maxGpusPerReplica": 1},
        )
    )
    wait_condition(namespace, "Stalled", "InsufficientGPUMemory", name="too-big")

    # One vLLM pod of qwen-vl, labelled as the operator's PodMonitor labels it.
    pod = SimulatedPod("qwen-vl-5d8c7b9f4-x2k4p", namespace, tmp_path)
    pod.start()
    try:
        vllm_labels = {**pod.labels, "vlm_operator_io_visionmodel": "qwen-vl"}
        operator_target = operator.metrics_url.removeprefix("http://").removesuffix("/metrics")
        prometheus.set_targets(
            [
                (operator_target, OPERATOR_JOB),
                (pod.metrics_target, vllm_labels),
                (pod.dcgm_target, pod.labels),
            ]
        )
        prometheus.wait_for_series("count(up == 1)", TARGET_TIMEOUT, lambda up: up[0][1] == 3)
        result = pod.send_requests(12, concurrency=4, images=1, max_tokens=8)
        assert result.failed == 0, result.errors
        prometheus.wait_for_series(
            f'vllm:e2e_request_latency_seconds_count{{namespace="{namespace}"}}',
            10,
            lambda samples: samples[0][1] >= 12,
        )

        # Every panel answers for the serving VisionModel; reconcile errors only after an error.
        for title, queries in dashboard_queries(namespace, "qwen-vl").items():
            for query in queries:
                if title in ("Stalled", "Reconcile errors"):
                    continue
                assert prometheus.wait_for_series(query, 10), f"{title}: {query}"
        [plan_query] = dashboard_queries(namespace, "qwen-vl")[
            "Precision, GPU and tensor parallelism"
        ]
        [(labels, _)] = prometheus.query(plan_query)
        assert labels["precision"] == "bf16"
        [stalled] = dashboard_queries(namespace, "too-big")["Stalled"]
        [(labels, _)] = prometheus.wait_for_series(stalled, 10)
        assert labels["reason"] == "InsufficientGPUMemory"

        # The alerts' expressions, as Prometheus evaluates them before their `for` runs out.
        stalled_now = prometheus.wait_for_series(alert_expression("VisionModelStalled"), 10)
        assert {labels["visionmodel"] for labels, _ in stalled_now} == {"too-big"}
        reporting = f'visionmodel:vllm_pods_reporting:count{{namespace="{namespace}"}}'
        prometheus.wait_for_series(reporting, 10)
        missing = prometheus.query(alert_expression("VisionModelMetricsMissing"))
        assert [labels for labels, _ in missing if labels["namespace"] == namespace] == []
        assert prometheus.query(alert_expression("VLMOperatorDown")) == []
    finally:
        pod.stop()
    operator.stop()
    prometheus.wait_for_series(
        alert_expression("VLMOperatorDown"), 20, lambda samples: samples[0][1] == 1
    )
