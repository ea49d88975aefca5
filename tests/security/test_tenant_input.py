"""Tenant input: what passes, the operator's allow-list, $ escaping, the bounded config.json
parse, name conflicts and duplicate YAML keys. The refusals themselves are tests/bad_input."""

from __future__ import annotations

from pathlib import Path

import pytest

from builders import plan, spec
from vlm_operator.api.config import DEFAULT_EXTRA_ARGS_ALLOWED, OperatorConfig
from vlm_operator.api.validation import duplicate_keys, validate_files
from vlm_operator.cli import main
from vlm_operator.controllers.planning import parse_config_json
from vlm_operator.render.labels import name_conflict, owner_reference
from vlm_operator.render.workload import RenderInput, escape_expansion, render_deployment

ALLOWED = Path(__file__).with_name("allowed.yaml")


def test_input_near_the_rules_is_accepted() -> None:
    assert validate_files([ALLOWED]) == []


@pytest.mark.parametrize(
    ("text", "kubelet_input"),
    [
        # Kubernetes: "$$(VAR_NAME) escaped references will never be expanded"; $$ becomes $.
        ("$(HF_TOKEN)", "$$(HF_TOKEN)"),
        ("costs $5", "costs $$5"),
        ("$$(A)", "$$$$(A)"),
        ("plain", "plain"),
    ],
)
def test_every_dollar_is_escaped_from_kubelet_expansion(text: str, kubelet_input: str) -> None:
    assert escape_expansion(text) == kubelet_input


def test_extra_args_and_env_values_reach_the_pod_escaped() -> None:
    tenant = spec(
        engine={
            "extraArgs": ["--tool-call-parser", "$(HF_TOKEN)"],
            "env": [{"name": "ECHO", "value": "$(HF_TOKEN)"}],
        }
    )
    deployment = render_deployment(
        RenderInput("qwen-vl", "team-a", "uid-1", tenant, plan(), OperatorConfig())
    )
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["args"][-2:] == ["--tool-call-parser", "$$(HF_TOKEN)"]
    assert {"name": "ECHO", "value": "$$(HF_TOKEN)"} in container["env"]


def test_default_configuration_refuses_unlisted_flags_and_trust_remote_code() -> None:
    refused = OperatorConfig().refused_extra_args(
        ["--seed", "1", "--trust-remote-code", "--enable-auto-tool-choice", "--enforce-eager"]
    )
    assert [index for index, _ in refused] == [2, 3]
    assert "allowTrustRemoteCode" in refused[0][1]


def test_configuration_decides_what_passes(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("allowTrustRemoteCode: true\nextraArgsAllowed: [--enable-auto-tool-choice]\n")
    from_file = OperatorConfig.load(path, {})
    assert from_file.refused_extra_args(["--trust-remote-code", "--enable-auto-tool-choice"]) == []
    assert [i for i, _ in from_file.refused_extra_args(["--seed=1"])] == [0]
    from_environment = OperatorConfig.load(
        None, {"VLM_OPERATOR_EXTRA_ARGS_ALLOWED": "--seed,--compilation-config"}
    )
    assert from_environment.extra_args_allowed == ("--seed", "--compilation-config")
    assert from_environment.refused_extra_args(["--compilation-config.level", "3"]) == []


def test_a_value_needs_a_flag_before_it() -> None:
    refused = OperatorConfig().refused_extra_args(["/etc/passwd", "--seed=1", "2", "--seed", "3"])
    assert [index for index, _ in refused] == [0, 2]


def test_default_allow_list_is_spelled_canonically() -> None:
    assert all(
        flag.startswith("--") and flag == flag.lower() for flag in DEFAULT_EXTRA_ARGS_ALLOWED
    )


def test_a_real_config_json_parses() -> None:
    text = (
        '{"architectures": ["Qwen2VLForConditionalGeneration"], "hidden_size": 1536, '
        '"rope_theta": 1000000.0, "rms_norm_eps": 1e-06, "vision_config": {"depth": 32}, '
        '"note": "brackets [[[ in a \\"string\\" do not nest"}'
    )
    parsed = parse_config_json(text)
    assert parsed["hidden_size"] == 1536
    assert parsed["vision_config"] == {"depth": 32}


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("[" * 17 + "]" * 17, "nests 17 levels deep"),
        ('{"a": ' + "9" * 21 + "}", "21-digit integer"),
        ('{"a": -1e309}', "beyond any architecture fact"),
        ('{"a": Infinity}', "holds Infinity"),
        ('{"a": 1', "is not JSON"),
        ('"text"', "is not an object"),
        (" " * 262_145, "larger than 262144 bytes"),
    ],
)
def test_config_json_outside_the_bounds_is_refused(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_config_json(text)


def test_only_a_child_this_visionmodel_controls_is_its_own() -> None:
    mine = {"metadata": {"ownerReferences": [owner_reference("qwen-vl", "uid-1")]}}
    other_owner = {"metadata": {"ownerReferences": [owner_reference("qwen-vl", "uid-0")]}}
    not_controller = {"metadata": {"ownerReferences": [{"uid": "uid-1", "controller": False}]}}
    assert name_conflict(None, "uid-1") is False
    assert name_conflict(mine, "uid-1") is False
    assert name_conflict({"metadata": {"name": "qwen-vl"}}, "uid-1") is True
    assert name_conflict(other_owner, "uid-1") is True
    assert name_conflict(not_controller, "uid-1") is True


def test_validate_warns_about_duplicate_keys(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = tmp_path / "twice.yaml"
    manifest.write_text(
        "apiVersion: vlm-operator.io/v1alpha1\nkind: VisionModel\nmetadata: {name: x}\n"
        "spec:\n  model: {id: a/b, id: c/d}\n  replicas: 1\n  replicas: 2\n",
        encoding="utf-8",
    )
    assert [str(w) for w in duplicate_keys(manifest)] == [
        f"{manifest}: <file>: warning: line 5: key 'id' is given twice",
        f"{manifest}: <file>: warning: line 7: key 'replicas' is given twice",
    ]
    assert main(["validate", str(manifest)]) == 0
    assert "key 'replicas' is given twice" in capsys.readouterr().out
