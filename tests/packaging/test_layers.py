"""The layering rules of the package, checked on its import statements."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "operator" / "vlm_operator"
PURE = ["api", "catalog", "sizing", "render", "reconcile", "autoscale/policy.py", "crdgen.py"]
KOPF_ALLOWED = {"handlers", "runner.py"}


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, by its full dotted name."""
    modules: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module)
    return modules


def files_of(part: str) -> list[Path]:
    target = PACKAGE / part
    return sorted(target.rglob("*.py")) if target.is_dir() else [target]


def top_level(modules: set[str]) -> set[str]:
    return {module.split(".")[0] for module in modules}


@pytest.mark.parametrize("part", PURE)
def test_pure_core_does_no_cluster_io(part: str) -> None:
    for path in files_of(part):
        modules = imported_modules(path)
        assert not top_level(modules) & {"kopf", "kubernetes", "urllib", "http", "socket"}, path
        assert not any(m.startswith("vlm_operator.k8s") for m in modules), path


def test_only_the_handlers_import_kopf() -> None:
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE)
        if relative.parts[0] in KOPF_ALLOWED:
            continue
        assert "kopf" not in top_level(imported_modules(path)), relative


def test_only_k8s_imports_the_kubernetes_client() -> None:
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE)
        if relative.parts[0] == "k8s":
            continue
        assert "kubernetes" not in top_level(imported_modules(path)), relative
