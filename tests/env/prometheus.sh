#!/usr/bin/env bash
# Prometheus and promtool for the monitoring tests (manifests/monitoring,
# operator/tests/monitoring.rs, the flash-sale test's scrape), built from the Go
# module proxy by the small module in tests/env/prometheus (no release tarball).
#
#   tests/env/prometheus.sh build   build both into the cache (first time only,
#                                   several minutes); logs on stderr only
#   tests/env/prometheus.sh path    print the directory holding both binaries
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=common.sh
. "$here/common.sh"

# Prometheus 3.x publishes its Go module as v0.3XX.Y for release 3.XX.Y.
MODULE_VERSION=$(awk '$1 == "github.com/prometheus/prometheus" {print $2; exit}' "$here/prometheus/go.mod")
[ -n "$MODULE_VERSION" ] || die "tests/env/prometheus/go.mod requires no github.com/prometheus/prometheus"
DIR="$PIXELPIPE_CACHE/bin/prometheus-$MODULE_VERSION"

build() {
  local tool t0
  for tool in promtool prometheus; do
    [ -x "$DIR/$tool" ] && continue
    t0=$SECONDS
    command -v go >/dev/null || die "Go is needed to build $tool $MODULE_VERSION"
    log "building $tool $MODULE_VERSION from the Go module proxy (first time only; a few minutes)"
    mkdir -p "$DIR"
    # The web UI's assets are not embedded (no `builtinassets` tag): the tests
    # use the HTTP API only.
    (cd "$here/prometheus" && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags="-s -w" \
      -o "$DIR/$tool.tmp.$$" "github.com/prometheus/prometheus/cmd/$tool") || die "building $tool failed"
    mv "$DIR/$tool.tmp.$$" "$DIR/$tool"
    log "built $DIR/$tool in $((SECONDS - t0)) s"
  done
}

case "${1:-}" in
  build) build ;;
  path) echo "$DIR" ;;
  *) echo "usage: $0 build|path" >&2; exit 2 ;;
esac
