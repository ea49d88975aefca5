"""Offline validation of VisionModel manifests against the same models the CRD comes from."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from pydantic.alias_generators import to_camel

from vlm_operator.api.config import OperatorConfig
from vlm_operator.api.constants import API_VERSION, KIND
from vlm_operator.api.v1alpha1 import VisionModel


@dataclass(frozen=True)
class Problem:
    """One problem found in one document, located by its field path."""

    source: str
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.source}: {self.field}: {self.message}"


def field_path(location: tuple[int | str, ...]) -> str:
    """Render a pydantic error location as a dotted field path, e.g. spec.engine.env[0].name.

    Defaults are validated under their Python names, so every name is put in its wire form."""
    path = ""
    for part in location:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            name = to_camel(part)
            path += f".{name}" if path else name
    return path or "<document>"


def validate_document(
    document: Any, source: str, config: OperatorConfig | None = None
) -> list[Problem]:
    """Check one parsed YAML document against the schema, then against what an operator with
    `config` (default: the default configuration) lets through; empty means valid."""
    if not isinstance(document, dict):
        return [Problem(source, "<document>", "expected a mapping (a Kubernetes object)")]
    if document.get("kind") != KIND or document.get("apiVersion") != API_VERSION:
        found = f"{document.get('apiVersion')}/{document.get('kind')}"
        return [Problem(source, "kind", f"expected {API_VERSION} {KIND}, found {found}")]
    try:
        # JSON mode with strict types matches the API server: "4" is not an integer there.
        model = VisionModel.model_validate_json(json.dumps(document), strict=True)
    except ValidationError as error:
        return [
            Problem(source, field_path(detail["loc"]), detail["msg"])
            for detail in error.errors(include_url=False)
        ]
    refused = (config or OperatorConfig()).refused_extra_args(model.spec.engine.extra_args)
    return [Problem(source, f"spec.engine.extraArgs[{index}]", why) for index, why in refused]


class _DuplicateKeyLoader(yaml.SafeLoader):
    """A safe loader that records mapping keys given twice (kubectl keeps the last one)."""

    duplicates: list[tuple[int, str]]

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                line = key_node.start_mark.line + 1
                self.duplicates.append((line, f"line {line}: key {key!r} is given twice"))
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def duplicate_keys(path: Path) -> list[Problem]:
    """Warnings for every mapping key given twice in a YAML file: the API server would take the
    last one silently, which hides what a reviewer read."""
    loader = _DuplicateKeyLoader(path.read_text(encoding="utf-8"))
    loader.duplicates = []
    try:
        while loader.check_data():  # type: ignore[no-untyped-call]
            loader.get_data()
    finally:
        loader.dispose()
    return [
        Problem(str(path), "<file>", f"warning: {found}") for _, found in sorted(loader.duplicates)
    ]


def iter_documents(path: Path) -> Iterator[tuple[str, Any]]:
    """Yield (source label, document) for each YAML document in a file."""
    text = path.read_text(encoding="utf-8")
    documents = [doc for doc in yaml.safe_load_all(text) if doc is not None]
    for index, document in enumerate(documents):
        label = str(path) if len(documents) == 1 else f"{path}#{index}"
        yield label, document


def validate_files(paths: list[Path]) -> list[Problem]:
    """Validate every document in every file; unreadable files are problems too."""
    problems: list[Problem] = []
    for path in paths:
        try:
            documents = list(iter_documents(path))
        except (OSError, yaml.YAMLError) as error:
            problems.append(Problem(str(path), "<file>", str(error).replace("\n", " ")))
            continue
        if not documents:
            problems.append(Problem(str(path), "<file>", "no YAML document found"))
        for label, document in documents:
            problems.extend(validate_document(document, label))
    return problems
