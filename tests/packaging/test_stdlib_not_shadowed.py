"""The operator/ source folder must never shadow the standard library's operator module."""

import importlib
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_stdlib_operator_is_the_real_one() -> None:
    operator_module = importlib.import_module("operator")
    assert callable(operator_module.itemgetter)
    assert not Path(operator_module.__file__ or "").resolve().is_relative_to(REPO_ROOT)


def test_stdlib_operator_importable_from_repo_root() -> None:
    """Running Python from the repository root, where operator/ is a folder, still works."""
    probe = "import operator, collections; print(operator.itemgetter(1)([5, 7]))"
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "7"


def test_package_has_no_operator_init() -> None:
    assert not (REPO_ROOT / "operator" / "__init__.py").exists()
