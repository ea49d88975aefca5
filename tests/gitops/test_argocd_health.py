"""The Argo CD health check for VisionModels, run under Lua 5.1 with Argo CD's sandbox.

Argo CD runs health scripts in gopher-lua (Lua 5.1) with only the base, table and package
libraries and a safe `os` of `time` and `date`: no `string`, `math`, `io` or `debug`, and no
string methods. The same restrictions are rebuilt here so that a script that works here works
there; the end-to-end suite runs it in the real Argo CD as well.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from lupa import lua51

from builders import plan
from vlm_operator.status.conditions import Observed, compute_status

CHECK_DIR = (
    Path(__file__).resolve().parents[2]
    / "gitops"
    / "argocd"
    / "resource_customizations"
    / "vlm-operator.io"
    / "VisionModel"
)
HEALTH_LUA = (CHECK_DIR / "health.lua").read_text(encoding="utf-8")
CASES = yaml.safe_load((CHECK_DIR / "health_test.yaml").read_text(encoding="utf-8"))["tests"]

# What gopher-lua's base library offers, less the functions that read files or compile code.
BASE_FUNCTIONS = [
    "assert",
    "error",
    "getmetatable",
    "ipairs",
    "next",
    "pairs",
    "pcall",
    "rawequal",
    "rawget",
    "rawset",
    "select",
    "setmetatable",
    "tonumber",
    "tostring",
    "type",
    "unpack",
    "xpcall",
]

SANDBOX = """
local script, obj, base = ...
local env = {}
for _, name in ipairs(base) do env[name] = _G[name] end
env.table = {}
for name, fn in pairs(table) do env.table[name] = fn end
local safe_os = {time = os.time, date = os.date}
env.os = safe_os
env.require = function(name)
  if name == "os" then return safe_os end
  error("module '" .. tostring(name) .. "' not found")
end
env.obj = obj
env._G = env
local chunk, problem = loadstring(script, "health.lua")
if chunk == nil then error(problem) end
setfenv(chunk, env)
return chunk()
"""


def run_health(obj: dict[str, Any], script: str = HEALTH_LUA) -> dict[str, Any]:
    """Run a health script on one object as Argo CD would and return its table as a dict."""
    lua = lua51.LuaRuntime(unpack_returned_tuples=True)
    # gopher-lua gives strings no methods unless the string library is opened; Argo CD does not.
    lua.execute("debug.getmetatable('').__index = nil")
    base = lua.table_from(BASE_FUNCTIONS)
    result = lua.execute(SANDBOX, script, lua.table_from(obj, recursive=True), base)
    return dict(result.items()) if result is not None else {}


@pytest.mark.parametrize("case", CASES, ids=[Path(case["inputPath"]).stem for case in CASES])
def test_health_test_yaml_case(case: dict[str, Any]) -> None:
    obj = yaml.safe_load((CHECK_DIR / case["inputPath"]).read_text(encoding="utf-8"))
    assert run_health(obj) == case["healthStatus"]


def test_every_testdata_file_is_a_case() -> None:
    listed = {case["inputPath"] for case in CASES}
    present = {f"testdata/{path.name}" for path in (CHECK_DIR / "testdata").glob("*.yaml")}
    assert listed == present


def test_each_stall_reason_has_a_degraded_case() -> None:
    # Every reason the operator writes on a Stalled condition, by family: the plan cannot fit,
    # the input is wrong, the rollout is stuck, the chosen autoscaler is missing.
    stall_reasons = {
        "InsufficientGPUMemory",
        "NoMatchingGPUNodes",
        "UnsupportedModel",
        "InvalidSpec",
        "ProgressDeadlineExceeded",
        "AutoscalerUnavailable",
    }
    degraded = {
        case["healthStatus"]["message"].split(":")[0]
        for case in CASES
        if case["healthStatus"]["status"] == "Degraded"
    }
    assert degraded == stall_reasons


@pytest.mark.parametrize(
    "script",
    [
        'return {status = string.format("%s", "Healthy")}',
        'local s = "Healthy"; return {status = s:lower()}',
        "return {status = tostring(math.floor(1.5))}",
        'local f = io.open("/etc/hostname"); return {status = "Healthy"}',
        'os.execute("true"); return {status = "Healthy"}',
        'local io = require("io"); return {status = "Healthy"}',
        'return {status = loadstring("return 1")}',
    ],
)
def test_sandbox_refuses_what_argo_cd_lacks(script: str) -> None:
    with pytest.raises(lua51.LuaError):
        run_health({}, script)


def test_sandbox_keeps_what_argo_cd_offers() -> None:
    script = (
        'local os = require("os"); local t = {}; table.insert(t, "Healthy"); '
        "return {status = t[1], message = tostring(os.time() > 0)}"
    )
    assert run_health({}, script) == {"status": "Healthy", "message": "true"}


def visionmodel_with_status(generation: int, status: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "vlm-operator.io/v1alpha1",
        "kind": "VisionModel",
        "metadata": {"name": "qwen-vl", "namespace": "models", "generation": generation},
        "spec": {"model": {"id": "Qwen/Qwen2.5-VL-7B-Instruct"}, "replicas": 1},
        "status": status,
    }


def deployment(replicas: int, ready: int) -> dict[str, Any]:
    return {
        "metadata": {"generation": 2},
        "status": {
            "observedGeneration": 2,
            "replicas": replicas,
            "readyReplicas": ready,
            "updatedReplicas": replicas,
        },
    }


def status_from_operator(
    desired: int, observed: Observed, stall_reason: str | None = None
) -> dict[str, Any]:
    return compute_status(
        name="qwen-vl",
        namespace="models",
        generation=2,
        desired_replicas=desired,
        service_port=8000,
        plan=plan(),
        stall_reason=stall_reason,
        observed=observed,
        previous_status={},
        now="2026-12-01T10:00:00Z",
    ).status


@pytest.mark.parametrize(
    ("desired", "observed", "stall_reason", "expected"),
    [
        (1, Observed(None), None, "Progressing"),
        (2, Observed(deployment(2, 1)), None, "Progressing"),
        (1, Observed(deployment(1, 1)), None, "Healthy"),
        (0, Observed(deployment(0, 0)), None, "Healthy"),
        (1, Observed(deployment(1, 1)), "InsufficientGPUMemory", "Degraded"),
    ],
    ids=["no-deployment", "one-of-two-ready", "serving", "scaled-to-zero", "stalled"],
)
def test_reads_the_status_the_operator_writes(
    desired: int, observed: Observed, stall_reason: str | None, expected: str
) -> None:
    status = status_from_operator(desired, observed, stall_reason)
    assert run_health(visionmodel_with_status(2, status))["status"] == expected
    # The same status before the operator has seen generation 3 is not yet healthy or failed.
    assert run_health(visionmodel_with_status(3, status))["status"] == "Progressing"
