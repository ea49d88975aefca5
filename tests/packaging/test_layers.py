"""The layering rules of the package.

The pure core is checked on what importing it actually loads: each pure module is imported in a
fresh interpreter, and none of the I/O or cluster libraries may appear in its sys.modules, however
indirectly they would arrive. The kopf and client boundaries are checked on import statements.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

OPERATOR_DIR = Path(__file__).resolve().parents[2] / "operator"
PACKAGE = OPERATOR_DIR / "vlm_operator"
PURE_PACKAGES = ["api", "catalog", "sizing", "render", "status"]
PURE_MODULES = ["vlm_operator.autoscale.policy", "vlm_operator.autoscale.signals"]
FORBIDDEN = {
    "kopf",
    "kubernetes",
    "urllib.request",
    "http.client",
    "http.server",
    "requests",
    "aiohttp",
    "urllib3",
}
"""Client libraries and the modules that open connections. `socket` and `urllib.parse` are not
listed: pydantic loads them for any model (through importlib.metadata and email.utils) without
doing I/O, so no pure layer could avoid them."""
LAYERS = [
    "api",
    "catalog",
    "sizing",
    "render",
    "status",
    "autoscale",
    "controllers",
    "k8s",
    "handlers",
    "cli",
]


def module_name(path: Path) -> str:
    """The dotted name of a module file of the package."""
    relative = path.relative_to(OPERATOR_DIR).with_suffix("")
    parts = relative.parts[:-1] if relative.name == "__init__" else relative.parts
    return ".".join(parts)


def pure_modules() -> list[str]:
    """Every module of the pure layers."""
    names = list(PURE_MODULES)
    for package in PURE_PACKAGES:
        names += [module_name(path) for path in sorted((PACKAGE / package).rglob("*.py"))]
    return sorted(set(names))


def forbidden_loaded(module: str, extra_path: Path | None = None) -> list[str]:
    """The forbidden modules that importing `module` loads, in a fresh interpreter."""
    paths = [str(OPERATOR_DIR)] + ([str(extra_path)] if extra_path else [])
    program = textwrap.dedent(
        f"""
        import json, sys
        sys.path[:0] = {paths!r}
        before = set(sys.modules)
        import {module}
        loaded = set(sys.modules) - before
        print(json.dumps(sorted(loaded & set({sorted(FORBIDDEN)!r}))))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=True
    )
    found: list[str] = json.loads(result.stdout)
    return found


@pytest.mark.parametrize("module", pure_modules())
def test_pure_module_loads_no_io_library(module: str) -> None:
    assert forbidden_loaded(module) == []


def test_a_transitive_leak_is_caught(tmp_path: Path) -> None:
    """A pure-looking module that imports a helper, which imports urllib, is reported."""
    (tmp_path / "leaky_helper.py").write_text("import urllib.request\n")
    (tmp_path / "leaky_pure.py").write_text("import leaky_helper  # no I/O import here\n")
    assert "urllib.request" in forbidden_loaded("leaky_pure", extra_path=tmp_path)


def test_the_render_to_sources_chain_is_caught(tmp_path: Path) -> None:
    """The leak this test was written for: a render module importing the metric sources."""
    (tmp_path / "render_with_sources.py").write_text("import vlm_operator.autoscale.sources\n")
    loaded = forbidden_loaded("render_with_sources", extra_path=tmp_path)
    assert "urllib.request" in loaded


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, by its full dotted name."""
    modules: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module)
    return modules


def top_level(modules: set[str]) -> set[str]:
    return {module.split(".")[0] for module in modules}


def test_only_the_handlers_import_kopf() -> None:
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE)
        if relative.parts[0] == "handlers":
            continue
        assert "kopf" not in top_level(imported_modules(path)), relative


def test_only_k8s_imports_the_kubernetes_client() -> None:
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE)
        if relative.parts[0] == "k8s":
            continue
        assert "kubernetes" not in top_level(imported_modules(path)), relative


def test_nothing_below_the_handlers_imports_them() -> None:
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE)
        if relative.parts[0] in {"handlers", "cli"}:
            continue
        assert not any(m.startswith("vlm_operator.handlers") for m in imported_modules(path))


def test_the_loops_do_not_import_each_other() -> None:
    for loop, other in [("reconcile_loop", "autoscale_loop"), ("autoscale_loop", "reconcile_loop")]:
        modules = imported_modules(PACKAGE / "controllers" / f"{loop}.py")
        assert f"vlm_operator.controllers.{other}" not in modules


def test_every_folder_is_a_documented_layer() -> None:
    folders = sorted(p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__")
    assert folders == sorted(LAYERS)
    for layer in LAYERS:
        docstring = ast.get_docstring(ast.parse((PACKAGE / layer / "__init__.py").read_text()))
        assert docstring, f"{layer}/__init__.py says what the layer is"


def test_no_module_shares_a_stem_with_a_package() -> None:
    for directory in [PACKAGE, *(p for p in PACKAGE.rglob("*") if p.is_dir())]:
        packages = {p.name for p in directory.iterdir() if (p / "__init__.py").exists()}
        modules = {p.stem for p in directory.glob("*.py")}
        assert not packages & modules, directory
