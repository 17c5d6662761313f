#!/usr/bin/env bash
# Runs every test: format and lint checks, unit tests, and the integration tests
# against a real Apache Kafka broker, a real kube-apiserver (with etcd) and a
# real node (kubelet, containerd, runc) that this script starts and stops.
#
#   tests/run.sh            everything
#   tests/run.sh --long     everything, with the long variants: 10 SIGKILLs instead
#                           of 3, three broker outages instead of one, 20,000 fuzz
#                           cases per property instead of 256 (about 30 min more)
#   tests/run.sh -p pixelpipe-worker --test crash_recovery    extra args go to cargo test
set -euo pipefail
if [ "${1:-}" = --long ]; then
  shift
  export PIXELPIPE_LONG=1 PROPTEST_CASES="${PROPTEST_CASES:-20000}"
fi
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
# shellcheck source=env/common.sh
. tests/env/common.sh

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PIXELPIPE_CACHE/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

log "checking formatting and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings

log "building"
cargo build --workspace --all-targets --locked
# The node runs the worker and operator images, built from release binaries
# (a pod's CPU limit then holds what a user's would).
cargo build --release --locked -p pixelpipe-worker -p pixelpipe-operator --bins

started_kafka=0 started_kube=0 started_node=0
cleanup() {
  if [ "$started_kafka" = 1 ]; then tests/env/kafka.sh stop || true; fi
  if [ "$started_kube" = 1 ]; then tests/env/kube.sh stop || true; fi
  if [ "$started_node" = 1 ]; then tests/env/node.sh stop || true; fi
}
trap cleanup EXIT
# The tests install a CRD, ClusterRoles and namespaces, and delete what they
# made: never in a cluster or on brokers the shell happens to select through
# KUBECONFIG or KAFKA_BOOTSTRAP. They use their own (a broker or control plane
# that already runs from tests/env/*.sh start is reused and left running), or
# ones named on purpose in PIXELPIPE_TEST_KUBECONFIG and
# PIXELPIPE_TEST_KAFKA_BOOTSTRAP.
KUBECONFIG=${PIXELPIPE_TEST_KUBECONFIG:-}
KAFKA_BOOTSTRAP=${PIXELPIPE_TEST_KAFKA_BOOTSTRAP:-}
KAFKA_POD_BOOTSTRAP=${PIXELPIPE_TEST_KAFKA_POD_BOOTSTRAP:-}
# The end-to-end test runs on a real node with a control plane of its own
# (tests/env/node.sh); the other Kubernetes tests share the plain one
# (tests/env/kube.sh), where no kubelet runs what they create. The node
# starts first: the broker listens for its pods on the node's bridge.
if ! tests/env/node.sh status >/dev/null 2>&1; then tests/env/node.sh start; started_node=1; fi
# shellcheck disable=SC1091
PIXELPIPE_NODE_KUBECONFIG=$(. "$PIXELPIPE_RUN/node.env" && echo "$KUBECONFIG")
export PIXELPIPE_NODE_KUBECONFIG
if [ -z "$KAFKA_BOOTSTRAP" ]; then
  if ! tests/env/kafka.sh status >/dev/null 2>&1; then tests/env/kafka.sh start; started_kafka=1; fi
  # shellcheck disable=SC1091
  . "$PIXELPIPE_RUN/kafka.env"
  [ -n "${KAFKA_POD_BOOTSTRAP:-}" ] ||
    die "the running broker has no listener for the node's pods (it started before the node): tests/env/kafka.sh stop"
fi
export KAFKA_BOOTSTRAP KAFKA_POD_BOOTSTRAP
if [ -z "$KUBECONFIG" ]; then
  if ! tests/env/kube.sh status >/dev/null 2>&1; then tests/env/kube.sh start; started_kube=1; fi
  # shellcheck disable=SC1091
  . "$PIXELPIPE_RUN/kube.env"
fi
export KUBECONFIG
tests/env/node.sh load "$CARGO_TARGET_DIR/release"

# The chart's test (operator/tests/helm.rs) runs helm, built from the Go module
# proxy like the control plane and cached with it.
tests/env/helm.sh build
HELM=$(tests/env/helm.sh path)
export HELM

# The monitoring tests run promtool and a Prometheus server, built from the Go
# module proxy and cached likewise.
tests/env/prometheus.sh build
PIXELPIPE_PROMETHEUS_DIR=$(tests/env/prometheus.sh path)
export PIXELPIPE_PROMETHEUS_DIR

log "running tests against Kafka at $KAFKA_BOOTSTRAP and the API server in $KUBECONFIG"
# One test at a time: each one runs workers and a broker on a 2-core machine,
# and their timings must not depend on what else happens to be running.
# --nocapture: the tests print what they measured (memory, duplicates).
results="$PIXELPIPE_RUN/test-output.log"
mkdir -p "$PIXELPIPE_RUN"
status=0
cargo test --workspace --locked "$@" -- --test-threads=1 --nocapture 2>&1 | tee "$results" || status=$?
# The benchmark's smoke mode (tiny input, one run, about a minute) keeps the
# benchmark working; the full run is documented in docs/benchmarks.md.
if [ "$#" -eq 0 ]; then
  log "benchmark smoke run"
  # The broker runs here: measured beside each design, as tools/bench/run.sh does.
  broker=()
  if [ -f "$PIXELPIPE_RUN/kafka/pid" ]; then broker=(--broker-pid "$(cat "$PIXELPIPE_RUN/kafka/pid")"); fi
  "$CARGO_TARGET_DIR/debug/pixelpipe-bench" run --smoke --bootstrap-servers "$KAFKA_BOOTSTRAP" \
    "${broker[@]}" >"$PIXELPIPE_RUN/bench-smoke.md" || { status=1; log "the benchmark smoke run failed"; }
  tail -n 12 "$PIXELPIPE_RUN/bench-smoke.md" || true
  # Its last three lines are for scripts: they must be there and parse.
  verdict='^ratio throughput [0-9.]+\|cpu_us_per_event pixelpipe [0-9.]+ ceiling [0-9.]+\|events_per_core_second pixelpipe [0-9]+$'
  tail -n 3 "$PIXELPIPE_RUN/bench-smoke.md" | paste -sd'|' | grep -Eq "$verdict" ||
    { status=1; log "the benchmark's output does not end with its three verdict lines"; }
fi
# A failed run ends with the node's own account: a pod that never ran is
# often explained there (a stopped kubelet, a taint) rather than in the test.
if [ "$status" != 0 ]; then tests/env/node.sh health || true; fi
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$results"
exit "$status"
