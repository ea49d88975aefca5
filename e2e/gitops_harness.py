"""Real Argo CD for end-to-end tests: its application controller and repo server, Redis and a
`git daemon`, all in a network namespace of their own whose only way out is the API server.

Argo CD 3.5's application controller serves its metrics on 0.0.0.0 with no flag to change it, so
Argo CD does not run in the host's network: `unshare --net` gives it a namespace with nothing
but a loopback interface. Redis, the repo server and the git daemon listen on that loopback, and
a relay in the test process carries the namespace's 127.0.0.1:<API server port> to the host's
API server. Argo CD can reach nothing else.

The binaries come from `make tools` (e2e/tools/build.sh); a missing tool fails the test and says
so. Argo CD's CRDs are applied from the build's copy of the argo-cd module, never committed.
Each process logs to .cluster/artifacts/argocd-<process>.log, kept after the run.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import json
import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import yaml

from harness import REPO_ROOT, WaitTimeoutError, kubectl, kubectl_result, wait_for

TOOLS_SCRIPT = REPO_ROOT / "e2e" / "tools" / "build.sh"
HEALTH_LUA = (
    REPO_ROOT
    / "gitops"
    / "argocd"
    / "resource_customizations"
    / "vlm-operator.io"
    / "VisionModel"
    / "health.lua"
)
ARGOCD_NAMESPACE = "argocd"
CLUSTER_NAME = "local"
# Ports inside Argo CD's own network namespace: nothing else listens there.
REDIS_PORT = 6379
REPO_SERVER_PORT = 8081
GIT_PORT = 9418


def tool_bin() -> Path:
    """The bin directory of `make tools`; fails the test, naming the fix, when a tool is missing."""
    result = subprocess.run(
        ["bash", str(TOOLS_SCRIPT), "--check"], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise AssertionError(
            f"the GitOps tools are not built; run `make tools`.\n{result.stderr.strip()}"
        )
    return Path(result.stdout.strip().splitlines()[-1])


def argocd_home(bin_dir: Path) -> Path:
    """The cache directory of the Argo CD build (its binary, CRDs and git wrapper)."""
    return (bin_dir / "argocd").resolve().parent


class NetworkNamespace:
    """A network namespace with only loopback, held open by a sleeping process."""

    def __init__(self) -> None:
        self._holder: subprocess.Popen[str] | None = None

    def start(self) -> None:
        self._holder = subprocess.Popen(
            [
                "unshare",
                "--net",
                "--",
                "sh",
                "-c",
                "ip link set lo up && echo up && exec sleep infinity",
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._holder.stdout is not None
        line = self._holder.stdout.readline().strip()
        if line != "up":
            self.stop()
            raise AssertionError("unshare --net could not create a network namespace with loopback")

    @property
    def path(self) -> str:
        assert self._holder is not None
        return f"/proc/{self._holder.pid}/ns/net"

    def command(self, *args: str) -> list[str]:
        """A command line that runs `args` inside the namespace."""
        return ["nsenter", f"--net={self.path}", "--", *args]

    def listen(self, port: int) -> socket.socket:
        """A listening socket on the namespace's 127.0.0.1:port, usable from this process."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        program = (
            "import socket, sys\n"
            "channel = socket.socket(fileno=int(sys.argv[1]))\n"
            "server = socket.create_server(('127.0.0.1', int(sys.argv[2])))\n"
            "socket.send_fds(channel, [b'x'], [server.fileno()])\n"
        )
        subprocess.run(
            self.command(sys.executable, "-c", program, str(theirs.fileno()), str(port)),
            pass_fds=(theirs.fileno(),),
            check=True,
            timeout=30,
        )
        theirs.close()
        _, fds, _, _ = socket.recv_fds(ours, 1, 1)
        ours.close()
        return socket.socket(fileno=fds[0])

    def stop(self) -> None:
        if self._holder is not None:
            self._holder.kill()
            self._holder.wait(timeout=10)
            self._holder = None


class Relay:
    """Carries connections from a listening socket to a TCP address on the host's loopback."""

    def __init__(self, listener: socket.socket, target: tuple[str, int]) -> None:
        self._listener = listener
        self._target = target
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed by stop()
            try:
                upstream = socket.create_connection(self._target, timeout=10)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        # Either side closing (or failing) ends both directions of the connection.
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        for end in (source, sink):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)
            end.close()

    def stop(self) -> None:
        self._listener.close()


class GitRepository:
    """A bare repository served by `git daemon`, and a work tree the test commits in."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.bare = root / "served" / "gitops.git"
        self.work = root / "work"
        self.url = f"git://127.0.0.1:{GIT_PORT}/gitops.git"

    def init(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self._git(self.root, "init", "--quiet", "--bare", "-b", "main", str(self.bare))
        self._git(self.root, "init", "--quiet", "-b", "main", str(self.work))
        self._git(self.work, "remote", "add", "origin", str(self.bare))

    def write(self, files: dict[str, str], message: str, remove: tuple[str, ...] = ()) -> str:
        """Write (and remove) files, commit, push to the served repository; return the commit."""
        for relative, text in files.items():
            path = self.work / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        for relative in remove:
            self._git(self.work, "rm", "--quiet", "-r", relative)
        self._git(self.work, "add", "--all")
        self._git(self.work, "commit", "--quiet", "--allow-empty", "-m", message)
        self._git(self.work, "push", "--quiet", "origin", "HEAD:main")
        return self._git(self.work, "rev-parse", "HEAD").strip()

    @staticmethod
    def _git(cwd: Path, *args: str) -> str:
        env = {
            **os.environ,
            "GIT_AUTHOR_NAME": "e2e",
            "GIT_AUTHOR_EMAIL": "e2e@127.0.0.1",
            "GIT_COMMITTER_NAME": "e2e",
            "GIT_COMMITTER_EMAIL": "e2e@127.0.0.1",
        }
        result = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, env=env, check=False
        )
        if result.returncode != 0:
            raise AssertionError(f"git {' '.join(args)} failed: {result.stderr.strip()}")
        return result.stdout


@dataclass
class ArgoProcess:
    """One process of the Argo CD installation, with its log file."""

    name: str
    log_path: Path
    process: subprocess.Popen[bytes]

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 80) -> str:
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])


def cluster_secret(kubeconfig: Path) -> dict[str, Any]:
    """A declarative Argo CD cluster Secret for the API server of a kubeconfig."""
    config = yaml.safe_load(kubeconfig.read_text(encoding="utf-8"))
    context_name = config["current-context"]
    context = next(item["context"] for item in config["contexts"] if item["name"] == context_name)
    cluster = next(c["cluster"] for c in config["clusters"] if c["name"] == context["cluster"])
    user = next(u["user"] for u in config["users"] if u["name"] == context["user"])

    def data(section: dict[str, Any], key: str) -> str:
        if f"{key}-data" in section:
            return str(section[f"{key}-data"])
        path = Path(section[key])
        if not path.is_absolute():
            path = kubeconfig.parent / path
        return base64.b64encode(path.read_bytes()).decode()

    tls = {
        "caData": data(cluster, "certificate-authority"),
        "certData": data(user, "client-certificate"),
        "keyData": data(user, "client-key"),
    }
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": "cluster-local",
            "namespace": ARGOCD_NAMESPACE,
            "labels": {"argocd.argoproj.io/secret-type": "cluster"},
        },
        "stringData": {
            "name": CLUSTER_NAME,
            "server": str(cluster["server"]),
            "config": json.dumps({"tlsClientConfig": tls}),
        },
    }


def established(crd: str) -> bool:
    """Whether the API server serves a CustomResourceDefinition."""
    conditions = kubectl_result(
        "get", crd, "-o", "jsonpath={range .status.conditions[*]}{.type}={.status} {end}"
    ).stdout
    return "Established=True" in conditions


def argocd_config_objects(health_lua: str) -> list[dict[str, Any]]:
    """The ConfigMaps, Secret and AppProject a core install needs, with our health check."""
    labels = {"app.kubernetes.io/part-of": "argocd"}

    def config_map(name: str, data: dict[str, str]) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": ARGOCD_NAMESPACE, "labels": labels},
            "data": data,
        }

    return [
        config_map(
            "argocd-cm",
            {"resource.customizations.health.vlm-operator.io_VisionModel": health_lua},
        ),
        config_map("argocd-cmd-params-cm", {}),
        config_map("argocd-rbac-cm", {}),
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "argocd-secret", "namespace": ARGOCD_NAMESPACE, "labels": labels},
        },
        {
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "AppProject",
            "metadata": {"name": "default", "namespace": ARGOCD_NAMESPACE},
            "spec": {
                "sourceRepos": ["*"],
                "destinations": [{"name": "*", "namespace": "*", "server": "*"}],
                "clusterResourceWhitelist": [{"group": "*", "kind": "*"}],
            },
        },
    ]


class ArgoCD:
    """The core of Argo CD (application controller and repo server) with Redis and git daemon."""

    def __init__(self, kubeconfig: Path, workdir: Path, log_dir: Path) -> None:
        self.bin = tool_bin()
        self.home = argocd_home(self.bin)
        self.kubeconfig = kubeconfig
        self.workdir = workdir
        self.log_dir = log_dir
        self.git = GitRepository(workdir / "git")
        self.network = NetworkNamespace()
        self.processes: list[ArgoProcess] = []
        self._relay: Relay | None = None

    def __enter__(self) -> ArgoCD:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def start(self) -> None:
        self.install()
        self.git.init()
        self.network.start()
        server = urlparse(str(cluster_secret(self.kubeconfig)["stringData"]["server"]))
        if server.hostname != "127.0.0.1" or server.port is None:
            raise AssertionError(f"the API server is not on 127.0.0.1: {server.netloc}")
        self._relay = Relay(self.network.listen(server.port), ("127.0.0.1", server.port))
        self._relay.start()
        environment = self._environment()
        redis = self.bin / "redis-server"
        self._spawn(
            "redis",
            [str(redis), "--bind", "127.0.0.1", "--port", str(REDIS_PORT), "--save", ""],
            environment,
        )
        self._spawn(
            "git-daemon",
            [
                "git",
                "daemon",
                "--export-all",
                "--reuseaddr",
                "--listen=127.0.0.1",
                f"--port={GIT_PORT}",
                f"--base-path={self.git.bare.parent}",
                str(self.git.bare.parent),
            ],
            environment,
        )
        redis_address = f"127.0.0.1:{REDIS_PORT}"
        self._spawn(
            "repo-server",
            [
                str(self.bin / "argocd-repo-server"),
                "--disable-tls",
                "--client-ca-path",
                "",
                "--address",
                "127.0.0.1",
                "--port",
                str(REPO_SERVER_PORT),
                "--metrics-address",
                "127.0.0.1",
                "--redis",
                redis_address,
                "--loglevel",
                "info",
                "--logformat",
                "text",
            ],
            environment,
        )
        self._spawn(
            "application-controller",
            [
                str(self.bin / "argocd-application-controller"),
                "--kubeconfig",
                str(self.kubeconfig),
                "--namespace",
                ARGOCD_NAMESPACE,
                "--repo-server",
                f"127.0.0.1:{REPO_SERVER_PORT}",
                "--repo-server-plaintext",
                "--redis",
                redis_address,
                "--app-resync",
                "10",
                "--self-heal-timeout-seconds",
                "0",
                "--persist-resource-health",
                "--loglevel",
                "info",
                "--logformat",
                "text",
            ],
            environment,
        )
        for process in self.processes:
            time.sleep(0.2)
            if not process.alive():
                raise AssertionError(f"{process.name} exited at start:\n{process.log_tail()}")

    def install(self) -> None:
        """Argo CD's CRDs (server-side: they exceed the client-side annotation limit), the
        argocd namespace with its configuration, and the cluster Secret."""
        crds = sorted((self.home / "crds").glob("*-crd.yaml"))
        args = [arg for path in crds for arg in ("-f", str(path))]
        applied = kubectl("apply", "--server-side", "--force-conflicts", *args, "-o", "name")
        # Polled here: `kubectl wait` fails outright while a new CRD's conditions are still null.
        for name in applied.stdout.split():
            wait_for(functools.partial(established, name), 60, f"{name} established")
        if kubectl_result("get", "namespace", ARGOCD_NAMESPACE).returncode != 0:
            kubectl("create", "namespace", ARGOCD_NAMESPACE)
        objects = [
            *argocd_config_objects(HEALTH_LUA.read_text(encoding="utf-8")),
            cluster_secret(self.kubeconfig),
        ]
        for manifest in objects:
            kubectl(
                "apply",
                "--server-side",
                "--force-conflicts",
                "-f",
                "-",
                input_text=json.dumps(manifest),
            )

    def _environment(self) -> dict[str, str]:
        home = self.workdir / "home"
        home.mkdir(parents=True, exist_ok=True)
        return {
            "PATH": f"{self.bin}{os.pathsep}{os.environ.get('PATH', '')}",
            "HOME": str(home),
            "TMPDIR": str(self.workdir),
            "KUBECONFIG": str(self.kubeconfig),
            "ARGOCD_GPG_ENABLED": "false",
            "HELM_CACHE_HOME": str(home / "helm-cache"),
            "HELM_CONFIG_HOME": str(home / "helm-config"),
            "HELM_DATA_HOME": str(home / "helm-data"),
        }

    def _spawn(self, name: str, command: list[str], environment: dict[str, str]) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"argocd-{name}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                self.network.command(*command),
                stdout=log,
                stderr=subprocess.STDOUT,
                env=environment,
                cwd=self.workdir,
            )
        self.processes.append(ArgoProcess(name, log_path, process))

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.process.terminate()
        for process in reversed(self.processes):
            try:
                process.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.process.kill()
                process.process.wait(timeout=10)
        self.processes.clear()
        if self._relay is not None:
            self._relay.stop()
            self._relay = None
        self.network.stop()


def application(
    name: str,
    repo_url: str,
    path: str,
    namespace: str,
    *,
    ignore_replicas: bool = False,
    respect_ignore_differences: bool = False,
) -> dict[str, Any]:
    """An Application with auto-sync, prune and self-heal, from one folder of the git repo."""
    options = ["RespectIgnoreDifferences=true"] if respect_ignore_differences else []
    spec: dict[str, Any] = {
        "project": "default",
        "source": {"repoURL": repo_url, "targetRevision": "HEAD", "path": path},
        "destination": {"name": CLUSTER_NAME, "namespace": namespace},
        "syncPolicy": {"automated": {"prune": True, "selfHeal": True}, "syncOptions": options},
    }
    if ignore_replicas:
        spec["ignoreDifferences"] = [
            {"group": "vlm-operator.io", "kind": "VisionModel", "jsonPointers": ["/spec/replicas"]}
        ]
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {"name": name, "namespace": ARGOCD_NAMESPACE},
        "spec": spec,
    }


def get_application(name: str) -> dict[str, Any]:
    result = kubectl("get", "application", name, "-n", ARGOCD_NAMESPACE, "-o", "json")
    found: dict[str, Any] = json.loads(result.stdout)
    return found


def refresh(name: str) -> None:
    """Ask the controller to look at git again now, as a webhook would."""
    kubectl(
        "annotate",
        "application",
        name,
        "-n",
        ARGOCD_NAMESPACE,
        "--overwrite",
        "argocd.argoproj.io/refresh=normal",
    )


def app_state(app: dict[str, Any]) -> tuple[str, str, str]:
    """(sync status, health status, synced revision: the first source's) of an Application."""
    status = app.get("status", {})
    sync = status.get("sync", {})
    # An Application with several sources reports one revision per source instead.
    revision = sync.get("revision") or next(iter(sync.get("revisions") or []), "")
    return (
        str(sync.get("status", "")),
        str(status.get("health", {}).get("status", "")),
        str(revision),
    )


def resource_health(app: dict[str, Any], kind: str, name: str) -> dict[str, Any]:
    """The health Argo CD recorded for one resource of an Application."""
    for resource in app.get("status", {}).get("resources", []):
        if resource.get("kind") == kind and resource.get("name") == name:
            return dict(resource.get("health", {}))
    return {}


def wait_application(
    name: str, sync: str, health: str, timeout: float, revision: str | None = None
) -> dict[str, Any]:
    """Wait until an Application reports the sync and health statuses (at a revision)."""

    def reached() -> dict[str, Any] | None:
        app = get_application(name)
        state = app_state(app)
        if state[:2] == (sync, health) and (revision is None or state[2] == revision):
            return app
        return None

    try:
        return wait_for(reached, timeout, f"Application {name} {sync}/{health}")
    except WaitTimeoutError as error:
        raise WaitTimeoutError(f"{error}; it reports:\n{application_summary(name)}") from None


def application_summary(name: str) -> str:
    """What an Application says about itself: states, conditions, the last operation, and every
    resource that is not Synced and Healthy."""
    status = get_application(name).get("status", {})
    lines = [f"sync/health/revision: {app_state({'status': status})}"]
    lines += [
        f"condition {c.get('type')}: {c.get('message')}" for c in status.get("conditions", [])
    ]
    operation = status.get("operationState", {})
    if operation:
        lines.append(f"operation {operation.get('phase')}: {operation.get('message')}")
    for resource in status.get("resources", []):
        health = resource.get("health", {})
        if resource.get("status") != "Synced" or health.get("status") not in (None, "Healthy"):
            lines.append(
                f"{resource.get('kind')}/{resource.get('name')}: {resource.get('status')}, "
                f"{health.get('status')} {health.get('message', '')}"
            )
    return "\n".join(lines)


def kstatus(bin_dir: Path, obj: dict[str, Any]) -> dict[str, Any]:
    """What kstatus (both cli-utils and Flux's fork) computes for one object."""
    result = subprocess.run(
        [str(bin_dir / "kstatus-check")],
        input=json.dumps(obj),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if result.returncode != 0:
        raise AssertionError(f"kstatus-check failed: {result.stderr.strip()}")
    line: dict[str, Any] = json.loads(result.stdout)
    return line


def argocd_health(bin_dir: Path, obj: dict[str, Any], workdir: Path) -> dict[str, str]:
    """The health Argo CD's own Lua VM computes for an object with our argocd-cm, offline."""
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "argocd-cm.yaml"
    config.write_text(
        yaml.safe_dump(argocd_config_objects(HEALTH_LUA.read_text(encoding="utf-8"))[0]),
        encoding="utf-8",
    )
    resource = workdir / "resource.yaml"
    resource.write_text(yaml.safe_dump(obj), encoding="utf-8")
    result = subprocess.run(
        [
            str(bin_dir / "argocd"),
            "admin",
            "settings",
            "resource-overrides",
            "health",
            str(resource),
            "--argocd-cm-path",
            str(config),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "HOME": str(workdir)},
        check=False,
    )
    if result.returncode != 0:
        raise AssertionError(f"argocd admin ... health failed: {result.stderr.strip()}")
    # It prints "STATUS: <status>" and "MESSAGE: <message>", or that no script is configured.
    found: dict[str, str] = {}
    for line in result.stdout.splitlines():
        key, _, value = line.partition(": ")
        if key in {"STATUS", "MESSAGE"}:
            found[key.lower()] = value
    if "status" not in found:
        raise AssertionError(f"argocd applied no health check: {result.stdout.strip()}")
    return found
