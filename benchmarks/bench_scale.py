"""The operator at fleet scale on the local control plane, against kubectl as the baseline.

Starts its own cluster (state in --state, default .cluster-bench/: its own ports, leaving
.cluster/ alone) with --nodes fake 8-GPU nodes and a /16 Service range, runs the operator as
its own service account, applies --visionmodels VisionModels in one
`kubectl apply --server-side`, then applies the same children (Deployments, Services, PDBs,
read back from the operator's run) with `kubectl apply --server-side` into another namespace.

Requests are counted by the API server itself: two FlowSchemas match the operator's service
account (writes, everything else), read from apiserver_flowcontrol_dispatched_requests_total.
Idle: a window with the operator running after convergence (resync every 30 s, so the window
holds full resyncs), then the same window with the operator paused (SIGSTOP).

    python benchmarks/bench_scale.py [--visionmodels 1000] [--nodes 300] [--output FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
KUBECTL = str(ROOT / ".venv" / "bin" / "kubectl")
NAMESPACE = "bench"
BASELINE = "baseline"
IDLE_WINDOW_SECONDS = 60.0
RESYNC_SECONDS = 30
OPERATOR_SA = "bench-operator"
WRITES, OTHERS = "bench-operator-writes", "bench-operator-others"
WRITE_VERBS = ("POST", "PUT", "PATCH", "APPLY", "DELETE", "DELETECOLLECTION")


def run(*args: str, env: dict[str, str], stdin: str | None = None) -> str:
    """Run a command; a failure stops the benchmark with the command's own stderr."""
    result = subprocess.run(args, input=stdin, capture_output=True, text=True, env=env, check=False)
    if result.returncode != 0:
        sys.exit(f"{' '.join(args[:4])} failed:\n{result.stderr[-3000:]}")
    return result.stdout


def start_cluster(state: Path, nodes: int) -> dict[str, str]:
    """up.sh with a fleet of identical L40S nodes; returns the environment pointing at it."""
    state.mkdir(parents=True, exist_ok=True)
    fleet = state / "fleet.json"
    pool = {"product": "NVIDIA-L40S", "nodes": nodes, "gpusPerNode": 8, "memoryMiB": 46068}
    fleet.write_text(json.dumps({"pools": [{**pool, "computeMajor": 8, "computeMinor": 9}]}))
    env = {
        **os.environ,
        "VLM_CLUSTER_DIR": str(state),
        "VLM_CLUSTER_FLEET": str(fleet),
        "PATH": f"{Path(KUBECTL).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    subprocess.run(
        ["bash", str(ROOT / "e2e/cluster/up.sh")], env=env, check=True, stdout=subprocess.DEVNULL
    )
    env["KUBECONFIG"] = str(state / "kubeconfig")
    return env


def flow_schemas() -> list[dict[str, Any]]:
    """A priority level and two FlowSchemas that isolate the operator's requests."""
    subject = {
        "kind": "ServiceAccount",
        "serviceAccount": {"name": OPERATOR_SA, "namespace": "default"},
    }
    level = {
        "apiVersion": "flowcontrol.apiserver.k8s.io/v1",
        "kind": "PriorityLevelConfiguration",
        "metadata": {"name": OPERATOR_SA},
        "spec": {
            "type": "Limited",
            "limited": {"nominalConcurrencyShares": 100, "limitResponse": {"type": "Reject"}},
        },
    }

    def schema(name: str, precedence: int, verbs: list[str]) -> dict[str, Any]:
        rules: dict[str, Any] = {
            "subjects": [subject],
            "resourceRules": [
                {
                    "verbs": verbs,
                    "apiGroups": ["*"],
                    "resources": ["*"],
                    "clusterScope": True,
                    "namespaces": ["*"],
                }
            ],
        }
        if verbs == ["*"]:
            rules["nonResourceRules"] = [{"verbs": ["*"], "nonResourceURLs": ["*"]}]
        return {
            "apiVersion": "flowcontrol.apiserver.k8s.io/v1",
            "kind": "FlowSchema",
            "metadata": {"name": name},
            "spec": {
                "matchingPrecedence": precedence,
                "priorityLevelConfiguration": {"name": OPERATOR_SA},
                "rules": [rules],
            },
        }

    writes = schema(WRITES, 100, ["create", "update", "patch", "delete", "deletecollection"])
    return [level, writes, schema(OTHERS, 101, ["*"])]


def operator_kubeconfig(env: dict[str, str], state: Path) -> Path:
    """A kubeconfig for the operator's own service account (cluster-admin)."""
    run(
        KUBECTL,
        "create",
        "serviceaccount",
        OPERATOR_SA,
        "-n",
        "default",
        "--dry-run=client",
        "-o",
        "yaml",
        env=env,
    )
    run(
        KUBECTL,
        "apply",
        "-f",
        "-",
        env=env,
        stdin=json.dumps(
            {
                "apiVersion": "v1",
                "kind": "List",
                "items": [
                    {
                        "apiVersion": "v1",
                        "kind": "ServiceAccount",
                        "metadata": {"name": OPERATOR_SA, "namespace": "default"},
                    },
                    {
                        "apiVersion": "rbac.authorization.k8s.io/v1",
                        "kind": "ClusterRoleBinding",
                        "metadata": {"name": OPERATOR_SA},
                        "roleRef": {
                            "apiGroup": "rbac.authorization.k8s.io",
                            "kind": "ClusterRole",
                            "name": "cluster-admin",
                        },
                        "subjects": [
                            {"kind": "ServiceAccount", "name": OPERATOR_SA, "namespace": "default"}
                        ],
                    },
                    *flow_schemas(),
                ],
            }
        ),
    )
    token = run(
        KUBECTL, "create", "token", OPERATOR_SA, "-n", "default", "--duration=24h", env=env
    ).strip()
    path = state / "operator.kubeconfig"
    path.write_text(Path(env["KUBECONFIG"]).read_text())
    op_env = {**env, "KUBECONFIG": str(path)}
    run(KUBECTL, "config", "set-credentials", OPERATOR_SA, f"--token={token}", env=op_env)
    run(KUBECTL, "config", "set-context", "--current", f"--user={OPERATOR_SA}", env=op_env)
    return path


def apiserver_counts(env: dict[str, str]) -> dict[str, float]:
    """The operator's dispatched requests per FlowSchema, and every write the API server served."""
    text = run(KUBECTL, "get", "--raw", "/metrics", env=env)
    counts = {WRITES: 0.0, OTHERS: 0.0, "cluster_writes": 0.0}
    for line in text.splitlines():
        if line.startswith("apiserver_flowcontrol_dispatched_requests_total{"):
            found = re.search(r'flow_schema="([^"]+)"', line)
            if found and found.group(1) in (WRITES, OTHERS):
                counts[found.group(1)] += float(line.rsplit(" ", 1)[1])
        elif line.startswith("apiserver_request_total{"):
            verb = re.search(r'verb="([^"]+)"', line)
            if verb and verb.group(1) in WRITE_VERBS:
                counts["cluster_writes"] += float(line.rsplit(" ", 1)[1])
    return counts


class Watcher:
    """Records when each object of a kind is first seen and first satisfies `done`."""

    def __init__(
        self, env: dict[str, str], kind: str, namespace: str, done: Callable[[dict[str, Any]], bool]
    ) -> None:
        self.seen: dict[str, float] = {}
        self.done_at: dict[str, float] = {}
        self._done = done
        self._process = subprocess.Popen(
            [
                KUBECTL,
                "get",
                kind,
                "-n",
                namespace,
                "--watch",
                "-o",
                "json",
                "--output-watch-events",
            ],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self._process.stdout is not None
        buffer = ""
        decoder = json.JSONDecoder()
        for line in self._process.stdout:
            buffer += line
            try:
                event, end = decoder.raw_decode(buffer.lstrip())
            except ValueError:
                continue
            buffer = buffer.lstrip()[end:]
            body = event.get("object", {})
            name = body.get("metadata", {}).get("name")
            if not name:
                continue
            now = time.monotonic()
            self.seen.setdefault(name, now)
            if name not in self.done_at and self._done(body):
                self.done_at[name] = now

    def stop(self) -> None:
        self._process.terminate()
        self._process.wait()


def vm_ready(body: dict[str, Any]) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in body.get("status", {}).get("conditions", [])
    )


def deployment_ready(body: dict[str, Any]) -> bool:
    return int(body.get("status", {}).get("readyReplicas", 0)) >= int(
        body.get("spec", {}).get("replicas", 1)
    )


def wait_count(mapping: dict[str, float], count: int, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while len(mapping) < count:
        if time.monotonic() > deadline:
            sys.exit(f"timed out waiting for {what}: {len(mapping)}/{count}")
        time.sleep(0.5)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def process_usage(pid: int) -> tuple[float, float]:
    """CPU seconds (user + system) and peak RSS in MiB of a running process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    peak = re.search(r"VmHWM:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    return cpu, int(peak.group(1)) / 1024 if peak else 0.0


def visionmodels(count: int) -> str:
    items = [
        {
            "apiVersion": "vlm-operator.io/v1alpha1",
            "kind": "VisionModel",
            "metadata": {"name": f"model-{index:04d}", "namespace": NAMESPACE},
            "spec": {
                "model": {"id": "Qwen/Qwen2.5-VL-7B-Instruct"},
                "workload": {
                    "maxImagesPerRequest": 2,
                    "maxImageSize": {"width": 1024, "height": 1024},
                },
                "hardware": {"gpuProduct": "NVIDIA-L40S", "maxGpusPerReplica": 1},
                "replicas": 1,
            },
        }
        for index in range(count)
    ]
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": items})


def baseline_children(env: dict[str, str]) -> str:
    """The operator's children as it applied them, moved to the baseline namespace."""
    listed = json.loads(
        run(
            KUBECTL,
            "get",
            "deployments,services,poddisruptionbudgets",
            "-n",
            NAMESPACE,
            "-l",
            "app.kubernetes.io/managed-by=vlm-operator",
            "-o",
            "json",
            env=env,
        )
    )
    items = []
    for item in listed["items"]:
        metadata = item["metadata"]
        spec = dict(item["spec"])
        for server_field in ("clusterIP", "clusterIPs"):
            spec.pop(server_field, None)
        items.append(
            {
                "apiVersion": item["apiVersion"],
                "kind": item["kind"],
                "metadata": {
                    "name": metadata["name"],
                    "namespace": BASELINE,
                    "labels": metadata.get("labels", {}),
                    "annotations": metadata.get("annotations", {}),
                },
                "spec": spec,
            }
        )
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": items})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--visionmodels", type=int, default=1000)
    parser.add_argument("--nodes", type=int, default=300)
    parser.add_argument("--state", type=Path, default=ROOT / ".cluster-bench")
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks/results/scale.json")
    parser.add_argument("--idle-seconds", type=float, default=IDLE_WINDOW_SECONDS)
    parser.add_argument("--keep-cluster", action="store_true")
    parser.add_argument(
        "--profile", type=Path, help="record the operator with py-spy into this file"
    )
    args = parser.parse_args()
    count = args.visionmodels
    env = start_cluster(args.state.resolve(), args.nodes)
    try:
        result = measure(env, args, count)
    finally:
        if not args.keep_cluster:
            subprocess.run(["bash", str(ROOT / "e2e/cluster/down.sh")], env=env, check=False)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


def measure(env: dict[str, str], args: argparse.Namespace, count: int) -> dict[str, Any]:
    run(KUBECTL, "apply", "--server-side", "-f", str(ROOT / "crds"), env=env)
    for _ in range(60):  # kubectl wait fails outright while the CRD has no status yet
        established = subprocess.run(
            [KUBECTL, "wait", "--for=condition=Established", "crd/visionmodels.vlm-operator.io"],
            env=env,
            capture_output=True,
            check=False,
        )
        if established.returncode == 0:
            break
        time.sleep(1)
    for namespace in (NAMESPACE, BASELINE):
        run(KUBECTL, "create", "namespace", namespace, env=env)
    op_env = {
        **env,
        "KUBECONFIG": str(operator_kubeconfig(env, args.state.resolve())),
        "VLM_OPERATOR_SCRAPE_PODS": "false",
        "VLM_OPERATOR_RESYNC_SECONDS": str(RESYNC_SECONDS),
        "PYTHONPATH": str(ROOT / "operator"),
    }
    log = (args.state / "operator.log").open("w")
    command = [
        sys.executable,
        "-m",
        "vlm_operator",
        "run",
        "--standalone",
        "-n",
        NAMESPACE,
        "--metrics-port",
        "0",
    ]
    if args.profile:
        command = [
            str(Path(sys.executable).with_name("py-spy")),
            "record",
            "--subprocesses",
            "--idle",
            "--threads",
            "-o",
            str(args.profile),
            "--format",
            "raw",
            "--",
            *command,
        ]
    operator = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=op_env, cwd=ROOT)
    time.sleep(5)  # the operator seeds its cache and starts its watches
    pid = (
        operator.pid
        if not args.profile
        else int(run("pgrep", "-f", "-n", "vlm_operator run", env=env).split()[0])
    )
    cpu_start, _ = process_usage(pid)

    models = Watcher(env, "visionmodels", NAMESPACE, vm_ready)
    deployments = Watcher(env, "deployments", NAMESPACE, deployment_ready)
    before = apiserver_counts(env)
    started = time.monotonic()
    run(KUBECTL, "apply", "--server-side", "-f", "-", env=env, stdin=visionmodels(count))
    applied = time.monotonic()
    wait_count(deployments.seen, count, 60 + count * 2.0, "every Deployment")
    to_deployments = time.monotonic() - started
    wait_count(models.done_at, count, 120 + count * 2.0, "every VisionModel Ready")
    total = max(models.done_at.values()) - started
    converged = apiserver_counts(env)
    latencies = [
        deployments.seen[name] - models.seen[name]
        for name in deployments.seen
        if name in models.seen
    ]

    time.sleep(10)  # let the last status writes and events settle
    idle_start = apiserver_counts(env)
    time.sleep(args.idle_seconds)
    idle_end = apiserver_counts(env)
    os.kill(pid, signal.SIGSTOP)
    time.sleep(args.idle_seconds)
    paused_end = apiserver_counts(env)
    os.kill(pid, signal.SIGCONT)
    cpu_end, peak_rss = process_usage(pid)
    models.stop()
    deployments.stop()

    baseline_objects = baseline_children(env)
    baseline = Watcher(env, "deployments", BASELINE, deployment_ready)
    baseline_started = time.monotonic()
    run(KUBECTL, "apply", "--server-side", "-f", "-", env=env, stdin=baseline_objects)
    wait_count(baseline.done_at, count, 120 + count * 2.0, "every baseline Deployment Ready")
    baseline_total = max(baseline.done_at.values()) - baseline_started
    baseline.stop()

    operator.send_signal(signal.SIGTERM)
    stop_started = time.monotonic()
    try:
        operator.wait(timeout=60)
    except subprocess.TimeoutExpired:
        operator.kill()
    shutdown = time.monotonic() - stop_started

    requests = (converged[WRITES] + converged[OTHERS]) - (before[WRITES] + before[OTHERS])
    return {
        "visionmodels": count,
        "nodes": args.nodes,
        "apply_s": round(applied - started, 2),
        "apply_to_deployment_p50_s": round(percentile(latencies, 0.5), 2),
        "apply_to_deployment_p99_s": round(percentile(latencies, 0.99), 2),
        "total_to_deployments_s": round(to_deployments, 1),
        "total_s": round(total, 1),
        "baseline_total_s": round(baseline_total, 1),
        "ratio": round(total / baseline_total, 2),
        "operator_cpu_s": round(cpu_end - cpu_start, 1),
        "operator_peak_rss_mb": round(peak_rss, 1),
        "api_requests_per_visionmodel": round(requests / count, 2),
        "api_writes_per_visionmodel": round((converged[WRITES] - before[WRITES]) / count, 2),
        "idle_window_s": args.idle_seconds,
        "idle_request_rate_per_s": round(
            (idle_end[WRITES] + idle_end[OTHERS] - idle_start[WRITES] - idle_start[OTHERS])
            / args.idle_seconds,
            3,
        ),
        "idle_write_rate_per_s": round(
            (idle_end[WRITES] - idle_start[WRITES]) / args.idle_seconds, 3
        ),
        "cluster_write_rate_running_per_s": round(
            (idle_end["cluster_writes"] - idle_start["cluster_writes"]) / args.idle_seconds, 3
        ),
        "cluster_write_rate_paused_per_s": round(
            (paused_end["cluster_writes"] - idle_end["cluster_writes"]) / args.idle_seconds, 3
        ),
        "resync_seconds": RESYNC_SECONDS,
        "shutdown_s": round(shutdown, 1),
        "cpus": os.cpu_count(),
    }


if __name__ == "__main__":
    main()
