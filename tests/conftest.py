"""Shared paths for the fast test suite."""

from collections.abc import Generator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def repo_root() -> Path:
    """The repository root."""
    return REPO_ROOT


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A contract test that skips is a failure: `make contract` runs them in the engine's venv,
    where a missing vLLM means a broken setup, not an optional check."""
    report = yield
    if report.skipped and item.get_closest_marker("contract") is not None:
        report.outcome = "failed"
        report.longrepr = f"contract test skipped (broken engine venv?): {report.longrepr}"
    return report
