#!/usr/bin/env bash
# The helm CLI for the chart's tests (charts/pixelpipe, operator/tests/helm.rs),
# built from the Go module proxy by the small module in tests/env/helm, so the
# tests never depend on what the machine has installed.
#
#   tests/env/helm.sh build     build helm into the cache (first time only); logs
#                               on stderr, nothing on stdout
#   tests/env/helm.sh path      print where build puts it (whether built or not)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=common.sh
. "$here/common.sh"

# The version is whatever the module requires; the tool directive does not
# name one, so read the require line.
HELM_VERSION=$(awk '$1 == "helm.sh/helm/v3" {print $2; exit}' "$here/helm/go.mod")
[ -n "$HELM_VERSION" ] || die "tests/env/helm/go.mod requires no helm.sh/helm/v3"
HELM="$PIXELPIPE_CACHE/bin/helm-$HELM_VERSION/helm"

# Release builds stamp these at link time (helm's Makefile): without them
# `helm version` says v3.x without a patch, and `helm template` and `helm lint`
# assume Kubernetes 1.20 instead of the version helm's client libraries speak.
ldflags() {
  local kube major minor
  kube=$(awk '$1 == "k8s.io/client-go" {print $2; exit}' "$here/helm/go.mod")
  kube=${kube#v0.}
  major=1 minor=${kube%%.*}
  local f="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
  f+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
  local p
  for p in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
    f+=" -X $p.k8sVersionMajor=$major -X $p.k8sVersionMinor=$minor"
  done
  echo "$f"
}

build() {
  if [ ! -x "$HELM" ]; then
    local t0=$SECONDS
    command -v go >/dev/null || die "Go is needed to build helm $HELM_VERSION"
    log "building helm $HELM_VERSION from the Go module proxy (first time only; a few minutes)"
    mkdir -p "$(dirname "$HELM")"
    # CGO off as in helm's own release builds: a static binary, no C toolchain.
    (cd "$here/helm" && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags="$(ldflags)" \
      -o "$HELM.tmp.$$" helm.sh/helm/v3/cmd/helm) || die "building helm $HELM_VERSION failed"
    mv "$HELM.tmp.$$" "$HELM"
    log "built $HELM in $((SECONDS - t0)) s"
  fi
}

case "${1:-}" in
  build) build ;;
  path) echo "$HELM" ;;
  *) echo "usage: $0 build|path" >&2; exit 2 ;;
esac
