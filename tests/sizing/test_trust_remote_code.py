"""--trust-remote-code in extra arguments, in every spelling vLLM 0.32.0's parser reads as on.

The spellings come from running `vllm serve`'s parser by hand (the contract test in
test_engine_contract.py repeats that against vLLM itself): underscores for dashes and unambiguous
abbreviations down to --trust-rem turn it on; --trust-r and shorter are ambiguous there."""

from __future__ import annotations

import pytest

from vlm_operator.api.config import OperatorConfig
from vlm_operator.api.v1alpha1 import VisionModelSpec
from vlm_operator.controllers.planning import SpecError, check_engine_policy
from vlm_operator.sizing.engine_args import requests_trust_remote_code

TURNED_ON = ["--trust-remote-code", "--trust_remote_code", "--trust-remote", "--trust-rem"]
NOT_TURNED_ON = ["--no-trust-remote-code", "--trust-request-chat-template", "--max-model-len=4096"]


@pytest.mark.parametrize("arg", TURNED_ON)
def test_every_spelling_that_turns_it_on_is_found(arg: str) -> None:
    assert requests_trust_remote_code(["--enforce-eager", arg])


@pytest.mark.parametrize("arg", NOT_TURNED_ON)
def test_other_flags_are_not(arg: str) -> None:
    assert not requests_trust_remote_code([arg])


def spec_with(extra_args: list[str]) -> VisionModelSpec:
    return VisionModelSpec.model_validate(
        {"model": {"id": "Qwen/Qwen2.5-VL-7B-Instruct"}, "engine": {"extraArgs": extra_args}}
    )


def test_the_configuration_decides() -> None:
    spec = spec_with(["--trust-remote-code"])
    with pytest.raises(SpecError, match=r"spec\.engine\.extraArgs.*allowTrustRemoteCode"):
        check_engine_policy(spec, OperatorConfig())
    check_engine_policy(spec, OperatorConfig(allow_trust_remote_code=True))
    check_engine_policy(spec_with(["--enforce-eager"]), OperatorConfig())
