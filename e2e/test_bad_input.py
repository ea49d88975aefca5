"""The API server itself rejects every malformed VisionModel, naming the field."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from harness import kubectl_result

pytestmark = pytest.mark.e2e

BAD_INPUTS = sorted((Path(__file__).resolve().parents[1] / "tests" / "bad_input").glob("*.yaml"))


def expected_field(path: Path) -> str:
    match = re.search(r"^# field: (\S+)$", path.read_text(encoding="utf-8"), re.MULTILINE)
    assert match, f"{path} lacks a '# field:' header"
    return match.group(1)


@pytest.mark.parametrize("bad_input", BAD_INPUTS, ids=lambda p: p.name)
def test_api_server_rejects_naming_the_field(bad_input: Path, namespace: str) -> None:
    manifest = yaml.safe_load(bad_input.read_text(encoding="utf-8"))
    manifest["metadata"]["namespace"] = namespace
    result = kubectl_result("apply", "-f", "-", input_text=yaml.safe_dump(manifest))
    assert result.returncode != 0, f"{bad_input.name} was accepted"
    assert expected_field(bad_input) in result.stderr, result.stderr


def test_long_names_are_rejected(namespace: str) -> None:
    manifest = {
        "apiVersion": "vlm-operator.io/v1alpha1",
        "kind": "VisionModel",
        "metadata": {"name": "a" * 51, "namespace": namespace},
        "spec": {"model": {"id": "a/b"}},
    }
    result = kubectl_result("apply", "-f", "-", input_text=yaml.safe_dump(manifest))
    assert result.returncode != 0
    assert "metadata.name must be at most 50 characters" in result.stderr


def test_explain_shows_descriptions() -> None:
    result = kubectl_result("explain", "visionmodel.spec.workload.maxImagesPerRequest")
    assert result.returncode == 0, result.stderr
    assert "--limit-mm-per-prompt" in result.stdout
