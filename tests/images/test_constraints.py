"""images/operator/constraints.txt stays in step with pyproject.toml: every runtime dependency
is pinned, exactly once, to a version its range allows, and the simulator's requirement too.
After changing pyproject's dependencies, `make constraints` regenerates the file."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO_ROOT = Path(__file__).resolve().parents[2]
CONSTRAINTS = REPO_ROOT / "images" / "operator" / "constraints.txt"
SIMULATOR_REQUIREMENTS = REPO_ROOT / "images" / "vllm-sim" / "requirements.txt"


def _pins() -> dict[str, Version]:
    """The constraints as canonical name -> pinned version; a line that is not `name==version`
    or a second pin of one name fails."""
    pins: dict[str, Version] = {}
    for line in CONSTRAINTS.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        requirement = Requirement(line)
        (specifier,) = requirement.specifier
        assert specifier.operator == "==", f"{line!r} is not an exact pin"
        name = canonicalize_name(requirement.name)
        assert name not in pins, f"{name} is pinned twice"
        pins[name] = Version(specifier.version)
    return pins


def _runtime_dependencies() -> list[Requirement]:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    return [Requirement(line) for line in project["dependencies"]]


def _simulator_requirements() -> list[Requirement]:
    lines = SIMULATOR_REQUIREMENTS.read_text().splitlines()
    return [Requirement(line) for line in lines if line.strip() and not line.startswith("#")]


@pytest.mark.parametrize(
    "requirement",
    [*_runtime_dependencies(), *_simulator_requirements()],
    ids=str,
)
def test_requirement_is_pinned_within_its_range(requirement: Requirement) -> None:
    pins = _pins()
    name = canonicalize_name(requirement.name)
    assert name in pins, f"{name} is not in {CONSTRAINTS.name}: run `make constraints`"
    assert requirement.specifier.contains(pins[name], prereleases=True), (
        f"{name}=={pins[name]} is outside {requirement.specifier}: run `make constraints`"
    )
