"""The operator configuration file and its environment overrides."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from vlm_operator.api.config import OperatorConfig


def test_file_keys_are_camel_case_and_environment_wins(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("resyncSeconds: 300\nscrapePods: false\nvllmImage: registry.local/vllm:1\n")
    config = OperatorConfig.load(path, {"VLM_OPERATOR_RESYNC_SECONDS": "45"})
    assert config.resync_seconds == 45.0
    assert config.scrape_pods is False
    assert config.vllm_image == "registry.local/vllm:1"


def test_no_file_means_defaults() -> None:
    assert OperatorConfig.load(None, {}) == OperatorConfig()


def test_an_unknown_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("resyncSecond: 300\n")
    with pytest.raises(ValidationError, match="resyncSecond"):
        OperatorConfig.load(path, {})


def test_a_file_that_is_not_a_mapping_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("- 1\n")
    with pytest.raises(ValueError, match="mapping"):
        OperatorConfig.load(path, {})
