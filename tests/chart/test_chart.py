"""The chart rendered by the pinned helm: lint, the strict values schema, the CRD it carries, the
operator's command line in each mode, and RBAC that never reaches Secrets."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Mapping
from typing import Any

import pytest
import yaml

from chart_harness import CHART_DIR, find, helm, helm_binary, render
from harness import REPO_ROOT
from vlm_operator.api.config import OperatorConfig
from vlm_operator.cli import build_parser

NAMESPACED = {"watchNamespaces": ["team-a", "team-b"]}
PEERING = {"replicaCount": 2}
MODES: dict[str, dict[str, Any]] = {
    "cluster": {},
    "cluster-peering": PEERING,
    "namespaced": NAMESPACED,
    "namespaced-peering": {**NAMESPACED, **PEERING},
}
READ_VERBS = {"get", "list", "watch"}


def container_args(objects: list[dict[str, Any]]) -> list[str]:
    deployment = find(objects, "Deployment")
    args: list[str] = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    return args


def rules_of(objects: list[dict[str, Any]]) -> dict[tuple[str, str, str | None], list[Any]]:
    """Rules of every Role and ClusterRole, keyed by (kind, name, namespace)."""
    return {
        (item["kind"], item["metadata"]["name"], item["metadata"].get("namespace")): item["rules"]
        for item in objects
        if item["kind"] in ("Role", "ClusterRole")
    }


@pytest.mark.parametrize("mode", MODES)
def test_lint_is_clean(mode: str, tmp_path: Any) -> None:
    values = tmp_path / "values.yaml"
    values.write_text(
        yaml.safe_dump(
            {
                **MODES[mode],
                "serviceMonitor": {"enabled": True},
                "prometheusRule": {"enabled": True},
                "grafanaDashboard": {"enabled": True},
            }
        ),
        encoding="utf-8",
    )
    output = helm("lint", "--strict", str(CHART_DIR), "-f", str(values)).stdout
    assert "0 chart(s) failed" in output
    assert "[WARNING]" not in output
    assert "[ERROR]" not in output


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        ({"replicas": 2}, "replicas"),
        ({"config": {"resyncSecond": 10}}, "resyncSecond"),
        ({"image": {"repository": "x", "digest": "sha256:0"}}, "digest"),
        ({"rbac": {"create": True, "secrets": True}}, "secrets"),
        ({"serviceMonitor": {"enabled": True, "intervall": "30s"}}, "intervall"),
        ({"resources": {"requests": {"cpus": 1}}}, "cpus"),
        ({"tolerations": [{"key": "a", "effects": "NoSchedule"}]}, "effects"),
        ({"replicaCount": 0}, "replicaCount"),
        ({"config": {"downloadMibPerSecond": 0}}, "downloadMibPerSecond"),
        ({"watchNamespaces": ["Team_A"]}, "watchNamespaces"),
        ({"config": {"allowTrustRemoteCode": "yes"}}, "allowTrustRemoteCode"),
    ],
)
def test_schema_refuses_unknown_keys_and_bad_values(
    values: Mapping[str, Any], complaint: str, tmp_path: Any
) -> None:
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(dict(values)), encoding="utf-8")
    result = subprocess.run(
        [str(helm_binary()), "template", "x", str(CHART_DIR), "-f", str(path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode != 0, f"{values} was accepted"
    assert "values don't meet the specifications of the schema" in result.stderr
    assert complaint in result.stderr


def test_every_value_is_documented_in_the_schema() -> None:
    """Every key of values.yaml is in values.schema.json, which describes each property and refuses
    unknown ones."""
    import json

    schema = json.loads((CHART_DIR / "values.schema.json").read_text(encoding="utf-8"))
    values = yaml.safe_load((CHART_DIR / "values.yaml").read_text(encoding="utf-8"))

    def walk(node: Mapping[str, Any], value: Any, path: str) -> None:
        properties = node.get("properties")
        if properties is None:
            return
        assert node.get("additionalProperties") is False, f"{path or 'root'} is not strict"
        assert set(value) <= set(properties), f"{path or 'root'}: the schema lacks values"
        for key, child in properties.items():
            where = f"{path}.{key}".lstrip(".")
            assert "description" in child, f"{where} has no description"
            if key in value:
                walk(child, value[key], where)

    walk(schema, values, "")


def test_the_crd_is_the_generated_one_and_kept_on_uninstall() -> None:
    generated = REPO_ROOT / "crds" / "vlm-operator.io_visionmodels.yaml"
    carried = CHART_DIR / "files" / "crds" / generated.name
    assert carried.read_bytes() == generated.read_bytes(), "run `make crds`"
    rendered = find(render(), "CustomResourceDefinition", "visionmodels.vlm-operator.io")
    expected = yaml.safe_load(generated.read_text(encoding="utf-8"))
    assert rendered["spec"] == expected["spec"]
    assert rendered["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
    assert rendered["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"
    assert all(
        item["kind"] != "CustomResourceDefinition" for item in render({"crd": {"install": False}})
    )


def test_the_peering_crds_are_the_kinds_kopf_watches() -> None:
    from kopf._cogs.structs import references

    crds = [
        document
        for document in yaml.safe_load_all((CHART_DIR / "crds" / "kopf-peering.yaml").read_text())
        if document
    ]
    served = {
        (f"{crd['spec']['group']}/{version['name']}", crd["spec"]["names"]["plural"])
        for crd in crds
        for version in crd["spec"]["versions"]
        if version["served"]
    }
    for selector in (references.CLUSTER_PEERINGS_K, references.NAMESPACED_PEERINGS_K):
        assert (f"{selector.group}/{selector.version}", selector.any_name) in served


def test_one_replica_runs_standalone_and_never_twice() -> None:
    objects = render()
    args = container_args(objects)
    assert "--standalone" in args
    assert not any(arg.startswith("--peering") for arg in args)
    assert "--all-namespaces" in args
    assert find(objects, "Deployment")["spec"]["strategy"] == {"type": "Recreate"}
    assert not [item for item in objects if item["apiVersion"].startswith("kopf.dev/")]


def test_replicas_use_peering_with_the_peering_object() -> None:
    objects = render(PEERING)
    args = container_args(objects)
    assert "--standalone" not in args
    assert "--peering=vlm-operator" in args
    assert find(objects, "ClusterKopfPeering", "vlm-operator")
    assert find(objects, "Deployment")["spec"]["strategy"]["type"] == "RollingUpdate"


def test_namespaced_peering_has_an_object_in_each_namespace() -> None:
    objects = render({**NAMESPACED, **PEERING})
    args = container_args(objects)
    assert [arg for arg in args if arg.startswith("--namespace")] == [
        "--namespace=team-a",
        "--namespace=team-b",
    ]
    peerings = [item for item in objects if item["kind"] == "KopfPeering"]
    assert sorted(item["metadata"]["namespace"] for item in peerings) == ["team-a", "team-b"]
    assert not [item for item in objects if item["kind"] == "ClusterKopfPeering"]


def test_the_configuration_checksum_follows_the_configuration_only() -> None:
    def checksum(values: Mapping[str, Any]) -> str:
        template = find(render(values), "Deployment")["spec"]["template"]
        annotation: str = template["metadata"]["annotations"]["checksum/config"]
        return annotation

    base = checksum({})
    assert checksum({"config": {"resyncSeconds": 45}}) != base
    assert checksum({"podLabels": {"team": "a"}}) == base


@pytest.mark.parametrize("mode", MODES)
def test_rbac_never_reaches_secrets_and_only_reads_nodes(mode: str) -> None:
    rules = [rule for found in rules_of(render(MODES[mode])).values() for rule in found]
    assert rules
    for rule in rules:
        fields = rule.get("apiGroups", []) + rule["resources"] + rule["verbs"]
        assert "*" not in fields, rule
        assert "secrets" not in rule["resources"], rule
        assert "nonResourceURLs" not in rule, rule
        if set(rule["resources"]) & {"nodes", "customresourcedefinitions", "configmaps", "pods"}:
            assert set(rule["verbs"]) <= READ_VERBS, rule


def test_namespaced_mode_grants_namespaced_kinds_only_in_its_namespaces() -> None:
    found = rules_of(render(NAMESPACED))
    roles = {key[2] for key in found if key[0] == "Role"}
    assert roles == {"team-a", "team-b"}
    cluster_wide = [
        rule for key, rules in found.items() if key[0] == "ClusterRole" for rule in rules
    ]
    # Pods too: free GPUs are counted from the pods of every namespace on the GPU nodes.
    assert {resource for rule in cluster_wide for resource in rule["resources"]} == {
        "nodes",
        "pods",
        "customresourcedefinitions",
    }


@pytest.mark.parametrize("mode", MODES)
def test_every_rule_says_why(mode: str, tmp_path: Any) -> None:
    """In the rendered manifests, a comment precedes every RBAC rule."""
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump(MODES[mode]), encoding="utf-8")
    output = helm("template", "vlm-operator", str(CHART_DIR), "-f", str(values)).stdout
    for document in output.split("\n---\n"):
        if not re.search(r"^kind: (Cluster)?Role$", document, re.M):
            continue
        lines = [line.strip() for line in document.splitlines() if line.strip()]
        for index, line in enumerate(lines):
            if line.startswith("- apiGroups:"):
                assert lines[index - 1].startswith("#"), (
                    f"no comment before {lines[index : index + 3]}"
                )


def test_the_chart_configuration_is_the_operators(tmp_path: Any) -> None:
    """config.yaml loads into the operator's configuration (unknown keys are refused there), the
    chart's defaults are the operator's, and the schema knows every setting a chart may set."""
    import json

    config_map = find(render(), "ConfigMap", "vlm-operator-config")
    path = tmp_path / "config.yaml"
    path.write_text(config_map["data"]["config.yaml"], encoding="utf-8")
    assert OperatorConfig.load(path, {}) == OperatorConfig()
    schema = json.loads((CHART_DIR / "values.schema.json").read_text(encoding="utf-8"))
    settable = {field.alias for field in OperatorConfig.model_fields.values()}
    # The version label follows the pinned image; a chart value could only contradict it.
    assert set(schema["properties"]["config"]["properties"]) == settable - {"vllmVersion"}


@pytest.mark.parametrize("mode", MODES)
def test_the_operator_command_line_parses(mode: str) -> None:
    """The Deployment's command is one the operator's own parser accepts, with the served
    namespaces and the peering the mode asks for."""
    objects = render(MODES[mode])
    container = find(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["vlm-operator"]
    args = build_parser().parse_args(container["args"])
    assert args.namespace == MODES[mode].get("watchNamespaces", [])
    assert args.all_namespaces is not bool(args.namespace)
    assert args.peering == ("vlm-operator" if MODES[mode].get("replicaCount", 1) > 1 else None)
    assert args.standalone is (args.peering is None)
    config_mount = container["volumeMounts"][0]["mountPath"]
    assert str(args.config).startswith(config_mount)


def test_the_activator_is_opt_in_per_visionmodel() -> None:
    """No activator by default; one Deployment, Service and Role per listed VisionModel, in its
    namespace, allowed to read it and update only its scale subresource."""
    assert not [o for o in render() if o["metadata"]["name"].endswith("-activator")]
    objects = render({"activator": {"models": [{"namespace": "team-a", "name": "qwen-vl"}]}})
    named = {
        (o["kind"], o["metadata"]["namespace"]): o
        for o in objects
        if o["metadata"]["name"] == "qwen-vl-activator"
    }
    assert set(named) == {
        (kind, "team-a")
        for kind in ("ServiceAccount", "Role", "RoleBinding", "Deployment", "Service")
    }
    container = named["Deployment", "team-a"]["spec"]["template"]["spec"]["containers"][0]
    assert "--visionmodel=team-a/qwen-vl" in container["args"]
    rules = named["Role", "team-a"]["rules"]
    writes = [rule for rule in rules if set(rule["verbs"]) - READ_VERBS]
    assert writes == [
        {
            "apiGroups": ["vlm-operator.io"],
            "resources": ["visionmodels/scale"],
            "resourceNames": ["qwen-vl"],
            "verbs": ["get", "update"],
        }
    ]
