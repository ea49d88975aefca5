#!/usr/bin/env bash
# Regenerate the wrapper modules' go.mod/go.sum from versions.env: argocd/ (Argo CD cannot be
# `go install`ed) and kstatus/ (the checker's dependency on cli-utils). Commit the result.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
source "$HERE/../cluster/versions.env"
export GOTOOLCHAIN=local GOFLAGS=-mod=mod

# Argo CD pins every k8s.io staging module (it imports k8s.io/kubernetes) and a few others with
# versioned replaces; they are copied from its own go.mod so the list never drifts. Its
# gitops-engine replace points at a directory missing from the module zip, so that one is pinned
# to a version the proxy serves instead.
cd "$HERE/argocd"
rm -f go.mod go.sum
go mod init vlm-operator.io/e2e/tools/argocd >/dev/null 2>&1
upstream=$(go mod download -json "github.com/argoproj/argo-cd/v3@$ARGOCD_VERSION" |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["GoMod"])')
go mod edit -json "$upstream" | python3 -c '
import json, sys
for rule in json.load(sys.stdin)["Replace"]:
    if rule["New"].get("Version"):
        print("%s=%s@%s" % (rule["Old"]["Path"], rule["New"]["Path"], rule["New"]["Version"]))
' | while read -r rule; do go mod edit -replace="$rule"; done
go mod edit -replace="github.com/argoproj/argo-cd/gitops-engine=github.com/argoproj/argo-cd/gitops-engine@$ARGOCD_GITOPS_ENGINE_VERSION"
go get -tool "github.com/argoproj/argo-cd/v3/cmd@$ARGOCD_VERSION"
go mod tidy
echo "argocd/go.mod pinned to Argo CD $ARGOCD_VERSION, gitops-engine $ARGOCD_GITOPS_ENGINE_VERSION" >&2

cd "$HERE/kstatus"
rm -f go.mod go.sum
go mod init vlm-operator.io/e2e/tools/kstatus >/dev/null 2>&1
go get "sigs.k8s.io/cli-utils@$CLI_UTILS_VERSION" "github.com/fluxcd/cli-utils@$FLUX_CLI_UTILS_VERSION"
go mod tidy
echo "kstatus/go.mod pinned to cli-utils $CLI_UTILS_VERSION and fluxcd/cli-utils $FLUX_CLI_UTILS_VERSION" >&2
