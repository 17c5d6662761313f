#!/usr/bin/env bash
# The benchmark (docs/benchmarks.md): builds the worker and pixelpipe-bench in
# release, starts a local Kafka broker unless KAFKA_BOOTSTRAP points at one,
# and prints Markdown tables on stdout (progress on stderr), then lines for
# scripts, the last three issue 16's: `ratio throughput <pixelpipe/ceiling>`,
# `cpu_us_per_event pixelpipe <x> ceiling <y>`, `events_per_core_second pixelpipe <z>`
# (Pixelpipe at the pools its evidence picks; medians of interleaved rounds;
# the ceiling a pass-through sending as many bytes as the partner payload).
#
#   tools/bench/run.sh                                   the full run: medians of 3, about 6 minutes
#   tools/bench/run.sh --runs 3 --events 1000000 --designs-only   issue 16's verdict in longer rounds, about 17 minutes
#   tools/bench/run.sh --smoke                           seconds, tiny input (tests/run.sh runs this)
#   tools/bench/run.sh --runs 1 --events 100000 --designs-only --extra=--queue-capacity=32
#   cargo bench -p pixelpipe-worker --bench stages  per-event cost of each stage (criterion)
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$repo"
. tests/env/common.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PIXELPIPE_CACHE/target}"
. tools/bench/lib.sh
bench_build
trap bench_broker_stop EXIT
bench_broker
# A broker on this machine is measured beside each design.
broker=() pid=$(bench_broker_pid)
[ -z "$pid" ] || broker=(--broker-pid "$pid")
"$bench_bin/pixelpipe-bench" run --bootstrap-servers "$KAFKA_BOOTSTRAP" "${broker[@]}" "$@"
