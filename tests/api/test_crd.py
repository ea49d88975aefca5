"""The committed CRD is generated from the models and carries what users and tools rely on."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from vlm_operator.api.crd import CRD_FILE_NAME, build_crd, render_crd_yaml
from vlm_operator.cli import main

REPO_ROOT = Path(__file__).resolve().parents[2]
COMMITTED = REPO_ROOT / "crds" / CRD_FILE_NAME


def _version() -> dict[str, Any]:
    versions: list[dict[str, Any]] = build_crd()["spec"]["versions"]
    assert len(versions) == 1
    return versions[0]


def _walk(schema: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    for name, sub in schema.get("properties", {}).items():
        yield f"{path}.{name}", sub
        yield from _walk(sub, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        yield from _walk(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from _walk(schema["additionalProperties"], f"{path}{{}}")


def test_committed_crd_matches_models() -> None:
    assert COMMITTED.read_text(encoding="utf-8") == render_crd_yaml(), (
        "crds/ drifted from the API models: run `make crds`"
    )


def test_crd_command_prints_the_crd(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["crd"]) == 0
    assert capsys.readouterr().out == render_crd_yaml()


def test_names() -> None:
    spec = build_crd()["spec"]
    assert spec["group"] == "vlm-operator.io"
    assert spec["names"]["plural"] == "visionmodels"
    assert spec["names"]["kind"] == "VisionModel"
    assert spec["names"]["shortNames"] == ["vlm"]
    assert spec["scope"] == "Namespaced"


def test_subresources() -> None:
    subresources = _version()["subresources"]
    assert subresources["status"] == {}
    assert subresources["scale"] == {
        "specReplicasPath": ".spec.replicas",
        "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.selector",
    }


def test_printer_columns() -> None:
    columns = {column["name"]: column for column in _version()["additionalPrinterColumns"]}
    default = [name for name, column in columns.items() if not column.get("priority")]
    assert default == ["Model", "Ready", "Replicas", "Available", "GPUs", "Precision", "TP", "Age"]
    assert columns["Endpoint"]["priority"] == 1
    assert columns["Message"]["priority"] == 1
    assert columns["Ready"]["jsonPath"] == '.status.conditions[?(@.type=="Ready")].status'


def test_every_field_is_described() -> None:
    root = _version()["schema"]["openAPIV3Schema"]
    undocumented = [
        path
        for path, node in _walk(root)
        if not path.startswith(".metadata")
        and not node.get("description")
        and "[]" not in path[-2:]
        and "{}" not in path[-2:]
    ]
    assert undocumented == []


def test_schema_is_structural() -> None:
    """Every node has a type or preserves unknown fields, and no JSON Schema leftovers remain."""
    root = _version()["schema"]["openAPIV3Schema"]
    text = yaml.safe_dump(root)
    for leftover in ("$ref", "anyOf", "allOf", "oneOf", "title", "$defs", "const"):
        assert leftover not in text
    for path, node in _walk(root):
        assert "type" in node or node.get("x-kubernetes-preserve-unknown-fields"), path
        if "properties" in node:
            assert "additionalProperties" not in node, path


def test_cel_rules() -> None:
    spec = _version()["schema"]["openAPIV3Schema"]["properties"]["spec"]
    scaling_rules = spec["properties"]["scaling"]["x-kubernetes-validations"]
    rules = {rule["rule"]: rule for rule in scaling_rules}
    assert rules["self.minReplicas <= self.maxReplicas"]["fieldPath"] == ".maxReplicas"
    assert rules["self.warmReplicas <= self.maxReplicas"]["fieldPath"] == ".warmReplicas"
    source = spec["properties"]["scaling"]["properties"]["metricsSource"]
    assert "exactly one" in source["x-kubernetes-validations"][0]["message"]


def test_numbers_and_strings_are_bounded() -> None:
    spec = _version()["schema"]["openAPIV3Schema"]["properties"]["spec"]
    unbounded = []
    for path, node in _walk(spec):
        if node.get("type") == "integer" and ("minimum" not in node or "maximum" not in node):
            unbounded.append(path)
        if node.get("type") == "string" and "enum" not in node and "maxLength" not in node:
            unbounded.append(path)
        if node.get("type") == "array" and "maxItems" not in node:
            unbounded.append(path)
    assert unbounded == []


def test_no_image_tag_default() -> None:
    engine = _version()["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["engine"]
    assert "default" not in engine["properties"]["image"]
