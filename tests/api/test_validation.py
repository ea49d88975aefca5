"""Offline validation: the examples pass, every bad-input file fails naming its field."""

import re
from pathlib import Path

import pytest

from vlm_operator.api.validation import validate_files
from vlm_operator.cli import main

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((REPO_ROOT / "examples").glob("*.yaml"))
BAD_INPUTS = sorted((REPO_ROOT / "tests" / "bad_input").glob("*.yaml"))


def expected_field(path: Path) -> str:
    """The field a bad-input file names in its `# field:` header."""
    match = re.search(r"^# field: (\S+)$", path.read_text(encoding="utf-8"), re.MULTILINE)
    assert match, f"{path} lacks a '# field:' header"
    return match.group(1)


def test_corpus_is_not_empty() -> None:
    assert len(EXAMPLES) >= 6
    assert len(BAD_INPUTS) >= 10


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_examples_are_valid(example: Path) -> None:
    assert validate_files([example]) == []


@pytest.mark.parametrize("bad_input", BAD_INPUTS, ids=lambda p: p.name)
def test_bad_input_is_rejected_naming_the_field(bad_input: Path) -> None:
    problems = validate_files([bad_input])
    assert [problem.field for problem in problems] == [expected_field(bad_input)]


def test_cli_prints_one_line_per_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = tmp_path / "two-problems.yaml"
    manifest.write_text(
        "apiVersion: vlm-operator.io/v1alpha1\nkind: VisionModel\nmetadata: {name: x}\n"
        "spec:\n  model: {id: a/b}\n  replicas: -1\n  service: {port: 70000}\n",
        encoding="utf-8",
    )
    assert main(["validate", str(manifest)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        f"{manifest}: spec.replicas: Input should be greater than or equal to 0",
        f"{manifest}: spec.service.port: Input should be less than or equal to 65535",
    ]


def test_cli_accepts_valid_files(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", *map(str, EXAMPLES)]) == 0
    assert f"{len(EXAMPLES)} file(s) valid" in capsys.readouterr().out


def test_wrong_kind_and_unreadable_file(tmp_path: Path) -> None:
    wrong_kind = tmp_path / "deployment.yaml"
    wrong_kind.write_text("apiVersion: apps/v1\nkind: Deployment\n", encoding="utf-8")
    broken = tmp_path / "broken.yaml"
    broken.write_text("spec: [unclosed\n", encoding="utf-8")
    fields = [problem.field for problem in validate_files([wrong_kind, broken, tmp_path / "nope"])]
    assert fields == ["kind", "<file>", "<file>"]


def test_multi_document_files_are_labelled(tmp_path: Path) -> None:
    manifest = tmp_path / "many.yaml"
    good = (REPO_ROOT / "examples" / "qwen2.5-vl-7b.yaml").read_text(encoding="utf-8")
    bad = (BAD_INPUTS[0]).read_text(encoding="utf-8")
    manifest.write_text(f"{good}\n---\n{bad}", encoding="utf-8")
    problems = validate_files([manifest])
    assert len(problems) == 1
    assert problems[0].source == f"{manifest}#1"


def test_name_length_is_bounded(tmp_path: Path) -> None:
    manifest = tmp_path / "long.yaml"
    manifest.write_text(
        "apiVersion: vlm-operator.io/v1alpha1\nkind: VisionModel\n"
        f"metadata: {{name: {'a' * 51}}}\nspec:\n  model: {{id: a/b}}\n",
        encoding="utf-8",
    )
    assert [problem.field for problem in validate_files([manifest])] == ["metadata.name"]
