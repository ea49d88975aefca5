"""A 50-VisionModel smoke run of the scale benchmark (make bench-scale runs 1,000): the harness
works end to end, every VisionModel converges, and the operator is quiet at idle."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness import REPO_ROOT

pytestmark = pytest.mark.e2e

KEYS = {
    "visionmodels",
    "nodes",
    "apply_to_deployment_p50_s",
    "apply_to_deployment_p99_s",
    "total_s",
    "baseline_total_s",
    "ratio",
    "operator_cpu_s",
    "operator_peak_rss_mb",
    "api_requests_per_visionmodel",
    "idle_write_rate_per_s",
}


def test_fifty_visionmodels_converge_and_idle_sends_no_write(tmp_path: Path) -> None:
    output = tmp_path / "scale.json"
    result = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "benchmarks" / "bench_scale.py"),
            "--visionmodels=50",
            "--nodes=20",
            "--idle-seconds=35",
            f"--state={tmp_path / 'cluster'}",
            f"--output={output}",
        ],
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    figures = json.loads(output.read_text())
    assert set(figures) >= KEYS
    assert figures["visionmodels"] == 50
    # The idle window holds a full resync of all 50: not one of them may write.
    assert figures["idle_write_rate_per_s"] == 0
    # Converging writes each child once, the status a few times and an event or two.
    assert figures["api_writes_per_visionmodel"] <= 10
