"""Hostile and malformed VisionModels against the real API server and the running operator:
each is refused naming its field, by the schema or with a Stalled condition, and nothing else
in the namespace changes."""

from __future__ import annotations

import json
import re
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness import (
    OperatorProcess,
    apply_manifest,
    condition,
    get_object,
    kubectl,
    kubectl_json,
    kubectl_result,
    visionmodel,
    wait_for,
)

pytestmark = pytest.mark.e2e

BAD_INPUTS = sorted((Path(__file__).resolve().parents[1] / "tests" / "bad_input").glob("*.yaml"))
OPERATOR_REFUSED = [path for path in BAD_INPUTS if "# refused-by: operator" in path.read_text()]
SCHEMA_REFUSED = [path for path in BAD_INPUTS if path not in OPERATOR_REFUSED]
WATCHED_KINDS = (
    "deployments,services,poddisruptionbudgets,horizontalpodautoscalers,pods,"
    "configmaps,secrets,serviceaccounts,roles,rolebindings"
)
"""Everything a VisionModel could make the operator create or change in its namespace."""

CONFIG_JSON = {
    "deep": "[" * 5000 + "]" * 5000,
    "long-int": '{"num_hidden_layers": 1' + "0" * 5000 + "}",
    "huge-float": '{"hidden_size": 1e400}',
    "nan": '{"hidden_size": NaN}',
    "huge": '{"pad": "' + "x" * 300_000 + '"}',
    "not-object": "[28, 4]",
}
"""Pathological config.json texts: the case name and the text."""


def expected_field(path: Path) -> str:
    match = re.search(r"^# field: (\S+)$", path.read_text(encoding="utf-8"), re.MULTILINE)
    assert match, f"{path} lacks a '# field:' header"
    return match.group(1)


def in_namespace(path: Path, namespace: str) -> dict[str, Any]:
    manifest: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    manifest["metadata"]["namespace"] = namespace
    return manifest


def snapshot(namespace: str) -> dict[str, str]:
    """Every watched object of the namespace, by kind/name, with its resourceVersion."""
    items = kubectl_json("get", WATCHED_KINDS, "-n", namespace)["items"]
    return {
        f"{item['kind']}/{item['metadata']['name']}": item["metadata"]["resourceVersion"]
        for item in items
    }


def stalled_message(namespace: str, name: str) -> str | None:
    """The Stalled message of a VisionModel once its current generation is stalled."""
    body = get_object("visionmodel", name, namespace)
    stalled = condition(body, "Stalled")
    current = body is not None and (
        body.get("status", {}).get("observedGeneration") == body["metadata"]["generation"]
    )
    return str(stalled.get("message", "")) if current and stalled.get("status") == "True" else None


@pytest.mark.parametrize("bad_input", SCHEMA_REFUSED, ids=lambda p: p.name)
def test_api_server_rejects_naming_the_field(bad_input: Path, namespace: str) -> None:
    before = snapshot(namespace)
    manifest = in_namespace(bad_input, namespace)
    result = kubectl_result("apply", "-f", "-", input_text=json.dumps(manifest))
    assert result.returncode != 0, f"{bad_input.name} was accepted"
    assert expected_field(bad_input) in result.stderr, result.stderr
    assert snapshot(namespace) == before


def test_operator_stalls_naming_the_field_and_creates_nothing(
    namespace: str, operator: OperatorProcess
) -> None:
    """What the schema lets through but this operator's configuration does not, pathological
    config.json and absurd workloads: all applied at once, each Stalled naming its field."""
    for name, text in CONFIG_JSON.items():
        config_map = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"cfg-{name}"}}
        config_map["data"] = {"config.json": text}
        kubectl("create", "-n", namespace, "-f", "-", input_text=json.dumps(config_map))
    before = snapshot(namespace)
    expected: dict[str, str] = {}
    for path in OPERATOR_REFUSED:
        apply_manifest(in_namespace(path, namespace))
        expected[path.stem] = expected_field(path)
    for name in CONFIG_JSON:
        model = {
            "id": "Qwen/Qwen2.5-VL-7B-Instruct",
            "architecture": {"configMapRef": {"name": f"cfg-{name}"}},
        }
        apply_manifest(visionmodel(namespace, f"config-{name}", model=model))
        expected[f"config-{name}"] = "spec.model.architecture.configMapRef"
    absurd = {
        "maxImagesPerRequest": 64,
        "maxImageSize": {"width": 16384, "height": 16384},
        "promptTokens": 1_048_576,
        "outputTokens": 1_048_576,
        "concurrency": 4096,
    }
    apply_manifest(visionmodel(namespace, "absurd-workload", workload=absurd))
    expected["absurd-workload"] = "token context"
    for name, field in expected.items():
        message = wait_for(partial(stalled_message, namespace, name), 90, f"{name} Stalled")
        assert field in message, f"{name}: {message}"
    assert snapshot(namespace) == before


def test_long_names_are_rejected(namespace: str) -> None:
    manifest = visionmodel(namespace, "a" * 51)
    result = kubectl_result("apply", "-f", "-", input_text=yaml.safe_dump(manifest))
    assert result.returncode != 0
    assert "metadata.name must be at most 50 characters" in result.stderr


def test_explain_shows_descriptions() -> None:
    result = kubectl_result("explain", "visionmodel.spec.workload.maxImagesPerRequest")
    assert result.returncode == 0, result.stderr
    assert "--limit-mm-per-prompt" in result.stdout


def test_input_near_the_rules_is_accepted(namespace: str) -> None:
    allowed = Path(__file__).resolve().parents[1] / "tests" / "security" / "allowed.yaml"
    manifest = in_namespace(allowed, namespace)
    result = kubectl_result("apply", "--dry-run=server", "-f", "-", input_text=json.dumps(manifest))
    assert result.returncode == 0, result.stderr
