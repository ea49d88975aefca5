"""The chart's alerts, recording rules and Grafana dashboard, checked with Debian's promtool:
every PromQL expression parses, the rules pass `promtool check rules`, and each alert is
unit-tested against synthetic series in alerts.test.yaml."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from chart_harness import CHART_DIR, find, promtool_binary, render, run_tool

TESTS = Path(__file__).with_name("alerts.test.yaml")
DASHBOARD = CHART_DIR / "files" / "dashboard.json"
# What Grafana substitutes before it sends a query.
GRAFANA_VARIABLES = {
    "$namespace": "team-a",
    "$visionmodel": "qwen-vl",
    "$__rate_interval": "1m",
}


def rendered_rules() -> dict[str, Any]:
    rule = find(render({"prometheusRule": {"enabled": True}}), "PrometheusRule")
    spec: dict[str, Any] = rule["spec"]
    return spec


def write_rules(groups: dict[str, Any], directory: Path) -> Path:
    path = directory / "rules.yaml"
    path.write_text(yaml.safe_dump(groups), encoding="utf-8")
    return path


def check_rules(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(promtool_binary()), "check", "rules", str(path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def dashboard_expressions() -> list[str]:
    """Every query of the dashboard: panel targets and the variables' label_values selectors,
    with Grafana's variables substituted."""
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    queries = [
        target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])
    ]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            inner = variable["query"]["query"].removeprefix("label_values(")
            queries.append(inner.rsplit(",", 1)[0])
    substituted = []
    for query in queries:
        for variable, value in GRAFANA_VARIABLES.items():
            query = query.replace(variable, value)
        assert "$" not in query, f"unknown variable in {query}"
        substituted.append(query)
    return substituted


def as_recording_rules(expressions: list[str]) -> dict[str, Any]:
    rules = [
        {"record": f"dashboard:query_{index}", "expr": e} for index, e in enumerate(expressions)
    ]
    return {"groups": [{"name": "dashboard", "rules": rules}]}


def test_rules_pass_promtool_check(tmp_path: Path) -> None:
    spec = rendered_rules()
    result = check_rules(write_rules(spec, tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    count = sum(len(group["rules"]) for group in spec["groups"])
    assert f"SUCCESS: {count} rules found" in result.stdout


def test_each_alert_is_unit_tested_with_promtool(tmp_path: Path) -> None:
    spec = rendered_rules()
    write_rules(spec, tmp_path)
    shutil.copy(TESTS, tmp_path / TESTS.name)
    result = run_tool([promtool_binary(), "test", "rules", str(tmp_path / TESTS.name)])
    assert "SUCCESS" in result.stdout
    alerts = {
        rule["alert"] for group in spec["groups"] for rule in group["rules"] if "alert" in rule
    }
    tested = {
        case["alertname"]
        for group in yaml.safe_load(TESTS.read_text(encoding="utf-8"))["tests"]
        for case in group.get("alert_rule_test", [])
    }
    assert alerts == tested


def test_every_dashboard_query_parses(tmp_path: Path) -> None:
    expressions = dashboard_expressions()
    assert len(expressions) >= 15
    result = check_rules(write_rules(as_recording_rules(expressions), tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_check_catches_a_broken_query(tmp_path: Path) -> None:
    """The parse check above can fail: promtool refuses an unbalanced expression."""
    broken = as_recording_rules(
        [*dashboard_expressions(), "sum(rate(vllm:num_requests_waiting[1m])"]
    )
    result = check_rules(write_rules(broken, tmp_path))
    assert result.returncode != 0
    assert "parse error" in result.stdout + result.stderr


def test_the_dashboard_configmap_is_labelled_for_the_grafana_sidecar() -> None:
    config_map = find(
        render({"grafanaDashboard": {"enabled": True}}), "ConfigMap", "vlm-operator-dashboard"
    )
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    shipped = json.loads(config_map["data"]["vlm-operator.json"])
    assert shipped == json.loads(DASHBOARD.read_text(encoding="utf-8"))


def test_monitoring_objects_are_off_by_default() -> None:
    kinds = {item["kind"] for item in render()}
    assert not kinds & {"ServiceMonitor", "PrometheusRule"}
    assert all(
        item["metadata"]["name"] != "vlm-operator-dashboard"
        for item in render()
        if item["kind"] == "ConfigMap"
    )


def test_the_service_monitor_scrapes_the_operator_metrics_port() -> None:
    objects = render({"serviceMonitor": {"enabled": True}})
    monitor = find(objects, "ServiceMonitor")
    service = find(objects, "Service", "vlm-operator-metrics")
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    port_names = {port["name"] for port in service["spec"]["ports"]}
    assert {endpoint["port"] for endpoint in monitor["spec"]["endpoints"]} <= port_names


def operator_series_names() -> set[str]:
    """The series names the operator exports, from its own metric definitions."""
    from prometheus_client import REGISTRY

    import vlm_operator.controllers.metrics  # noqa: F401  (registers the metrics)

    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"], "gauge": [""]}
    return {
        family.name + suffix
        for family in REGISTRY.collect()
        if family.name.startswith("vlm_operator_")
        for suffix in suffixes.get(family.type, [])
    }


def test_dashboard_and_rules_use_only_series_the_operator_exports() -> None:
    text = DASHBOARD.read_text(encoding="utf-8") + yaml.safe_dump(rendered_rules())
    # vlm_operator_io_visionmodel is the PodMonitor's label on vLLM's series, not a series.
    used = set(re.findall(r"\bvlm_operator_(?!io_)[a-z_]+", text))
    assert len(used) >= 9
    assert used <= operator_series_names()
