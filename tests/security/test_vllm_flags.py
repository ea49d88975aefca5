"""The flag lists of the security rules, checked against the pinned vLLM's own parser: every
flag named in a rule exists, so no rule is aimed at a misspelling."""

from __future__ import annotations

import pytest

from vlm_operator.api.config import DEFAULT_EXTRA_ARGS_ALLOWED, TRUST_REMOTE_CODE
from vlm_operator.api.safety import OPERATOR_FLAGS
from vlm_operator.catalog.engine import VLLM_VERSION


@pytest.mark.contract
def test_every_flag_of_the_rules_is_a_vllm_serve_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VLLM_TARGET_DEVICE", "cpu")
    vllm = pytest.importorskip("vllm")
    from vllm.entrypoints.launchers.cli_args import make_arg_parser
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    assert vllm.__version__ == VLLM_VERSION
    parser = make_arg_parser(FlexibleArgumentParser())
    known = {option for action in parser._actions for option in action.option_strings}
    # `vllm serve` takes the model as its first positional argument; --model is its spelling as a
    # flag (and --config a file of flags): both are refused whether or not this parser lists them.
    named = {f"--{flag}" for flag in OPERATOR_FLAGS} - {"--model", "--config"}
    rules = named | set(DEFAULT_EXTRA_ARGS_ALLOWED) | {TRUST_REMOTE_CODE}
    assert sorted(rules - known) == []
    # Abbreviations are why the allow-list compares exact names.
    assert parser.allow_abbrev
