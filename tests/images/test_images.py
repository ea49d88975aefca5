"""The built images, run with buildah: the operator's entry point prints the package version
and the checked-in CRD and its kopf layer loads, the simulator's serves vLLM's endpoints on
loopback, both run as a numeric non-root user, and each holds exactly its pinned runtime
dependencies."""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest
from packaging.utils import canonicalize_name

from vlm_operator import __version__

pytestmark = pytest.mark.images

REPO_ROOT = Path(__file__).resolve().parents[2]
ARCHIVES = REPO_ROOT / "build" / "images"
CONSTRAINTS = REPO_ROOT / "images" / "operator" / "constraints.txt"
# Prints each installed distribution of the image's environment as `name==version`.
LIST_DISTRIBUTIONS = (
    "import importlib.metadata as m\n"
    "for d in m.distributions(): print(d.metadata['Name'] + '==' + d.version)"
)


@dataclass(frozen=True)
class ImageContainer:
    """A buildah working container made from one OCI archive, in a storage of its own."""

    storage: Path
    container: str

    def buildah_command(self, *args: str) -> list[str]:
        """A buildah command line against this container's storage."""
        return [
            "buildah",
            "--root",
            str(self.storage / "root"),
            "--runroot",
            str(self.storage / "run"),
            "--storage-driver",
            "vfs",
            *args,
        ]

    def run_command(self, *command: str) -> list[str]:
        """The command line that runs COMMAND in the container as its configured user."""
        return self.buildah_command("run", "--isolation", "chroot", self.container, "--", *command)

    def run(self, *command: str) -> str:
        """Run COMMAND in the container; its stdout. A non-zero exit fails with its stderr."""
        done = subprocess.run(
            self.run_command(*command), capture_output=True, text=True, timeout=120, check=False
        )
        assert done.returncode == 0, f"{command} exited {done.returncode}: {done.stderr}"
        return done.stdout

    def config(self) -> dict[str, Any]:
        """The OCI configuration (User, Entrypoint, Env, Labels ...) per buildah inspect."""
        done = subprocess.run(
            self.buildah_command("inspect", "--type", "container", self.container),
            capture_output=True,
            text=True,
            check=True,
        )
        return cast(dict[str, Any], json.loads(done.stdout)["OCIv1"]["config"])


def _open_archive(name: str, storage: Path) -> Iterator[ImageContainer]:
    """Import build/images/NAME-<version>.oci.tar and yield a working container of it."""
    archive = ARCHIVES / f"{name}-{__version__}.oci.tar"
    if shutil.which("buildah") is None:
        pytest.fail("buildah is not installed: `make images` installs it from Debian")
    if not archive.is_file():
        pytest.fail(f"{archive} is missing: build it with `make images` (`make test` does)")
    image = ImageContainer(storage, name)
    subprocess.run(
        image.buildah_command("from", "--pull-never", "--name", name, f"oci-archive:{archive}"),
        capture_output=True,
        text=True,
        check=True,
    )
    yield image
    subprocess.run(image.buildah_command("rm", "--all"), capture_output=True, check=False)
    subprocess.run(
        image.buildah_command("rmi", "--all", "--force"), capture_output=True, check=False
    )
    shutil.rmtree(storage, ignore_errors=True)


@pytest.fixture(scope="module")
def operator_image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ImageContainer]:
    """The operator image."""
    yield from _open_archive("vlm-operator", tmp_path_factory.mktemp("operator-image"))


@pytest.fixture(scope="module")
def simulator_image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ImageContainer]:
    """The vLLM simulator image."""
    yield from _open_archive("vllm-sim", tmp_path_factory.mktemp("simulator-image"))


def _pins(lines: str) -> dict[str, str]:
    """`name==version` lines (comments skipped) as canonical name -> version."""
    pins: dict[str, str] = {}
    for line in lines.splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.strip().split("==")
            pins[canonicalize_name(name)] = version
    return pins


def _listening_urls(server: subprocess.Popen[str], timeout: float) -> dict[str, str]:
    """The `api URL` and `dcgm URL` lines the simulator prints once listening, read for at
    most TIMEOUT seconds (a reader thread, so a silent process cannot hang the test)."""
    lines: queue.Queue[str] = queue.Queue()
    assert server.stdout is not None
    stdout = server.stdout

    def read() -> None:
        for line in stdout:
            lines.put(line)

    threading.Thread(target=read, daemon=True).start()
    urls: dict[str, str] = {}
    deadline = time.monotonic() + timeout
    while len(urls) < 2 and (remaining := deadline - time.monotonic()) > 0:
        try:
            line = lines.get(timeout=remaining)
        except queue.Empty:
            break
        found = re.fullmatch(r"(api|dcgm) (http://127\.0\.0\.1:\d+)", line.strip())
        if found:
            urls[found[1]] = found[2]
    return urls


def _assert_non_root_user(image: ImageContainer) -> None:
    """The configured user is a numeric non-zero UID (what runAsNonRoot can verify), and
    processes in the image run as it."""
    user = image.config()["User"]
    uid = user.split(":")[0]
    assert uid.isdigit(), f"image user {user!r} is not numeric"
    assert int(uid) != 0
    assert image.run("id", "-u").strip() == uid


def test_operator_entrypoint_prints_the_package_version(operator_image: ImageContainer) -> None:
    entrypoint = operator_image.config()["Entrypoint"]
    assert entrypoint == ["vlm-operator"]
    assert operator_image.run(*entrypoint, "version").strip() == __version__


def test_operator_entrypoint_prints_the_checked_in_crd(operator_image: ImageContainer) -> None:
    """The installed package, its pydantic models and their data files, work in the image."""
    crd = operator_image.run(*operator_image.config()["Entrypoint"], "crd")
    assert crd == (REPO_ROOT / "crds" / "vlm-operator.io_visionmodels.yaml").read_text()


def test_operator_kopf_and_client_layers_import(operator_image: ImageContainer) -> None:
    """kopf, the Kubernetes client and their compiled dependencies load under the image's Python."""
    operator_image.run("python", "-c", "import vlm_operator.handlers, vlm_operator.k8s")


def test_operator_image_is_labelled_with_the_package_version(
    operator_image: ImageContainer,
) -> None:
    labels = operator_image.config()["Labels"]
    assert labels["org.opencontainers.image.version"] == __version__
    assert labels["org.opencontainers.image.title"] == "vlm-operator"


def test_operator_image_user_is_not_root(operator_image: ImageContainer) -> None:
    _assert_non_root_user(operator_image)


def test_operator_image_holds_exactly_the_constraints(operator_image: ImageContainer) -> None:
    installed = _pins(operator_image.run("python", "-c", LIST_DISTRIBUTIONS))
    expected = _pins(CONSTRAINTS.read_text()) | {"vlm-operator": __version__}
    assert installed == expected


def test_simulator_entrypoint_prints_its_usage(simulator_image: ImageContainer) -> None:
    entrypoint = simulator_image.config()["Entrypoint"]
    assert entrypoint == ["vllm"]
    assert simulator_image.run(*entrypoint, "--help").startswith("usage: vllm_sim")


def test_simulator_image_serves_vllm_endpoints(simulator_image: ImageContainer) -> None:
    """`vllm serve` in the image answers /health and publishes vLLM's and DCGM's metrics; it
    listens on 127.0.0.1 only (chroot isolation shares the host's network)."""
    command = simulator_image.run_command(
        *simulator_image.config()["Entrypoint"],
        *("serve", "sim/vision-model", "--host", "127.0.0.1", "--port", "0", "--dcgm-port", "0"),
    )
    server = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        urls = _listening_urls(server, timeout=60)
        assert set(urls) == {"api", "dcgm"}, f"no listening lines; exit {server.poll()}"
        with urllib.request.urlopen(urls["api"] + "/health", timeout=10) as response:
            assert response.status == 200
        with urllib.request.urlopen(urls["api"] + "/metrics", timeout=10) as response:
            assert "vllm:num_requests_waiting" in response.read().decode()
        with urllib.request.urlopen(urls["dcgm"] + "/metrics", timeout=10) as response:
            assert "DCGM_FI_DEV_GPU_UTIL" in response.read().decode()
    finally:
        # buildah run ends its command with SIGKILL when signalled; nothing may stay listening.
        os.killpg(server.pid, signal.SIGTERM)
        server.communicate(timeout=30)
    with pytest.raises(urllib.error.URLError, match="Connection refused"):
        urllib.request.urlopen(urls["api"] + "/health", timeout=5)


def test_simulator_image_user_is_not_root(simulator_image: ImageContainer) -> None:
    _assert_non_root_user(simulator_image)


def test_simulator_image_holds_exactly_its_pinned_dependency(
    simulator_image: ImageContainer,
) -> None:
    installed = _pins(simulator_image.run("python", "-c", LIST_DISTRIBUTIONS))
    operator_pins = _pins(CONSTRAINTS.read_text())
    assert installed == {"prometheus-client": operator_pins["prometheus-client"]}
