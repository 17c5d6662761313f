#!/usr/bin/env bash
# Where the worker's CPU goes (docs/benchmarks.md, "Where the CPU goes"): preloads a
# backlog of the benchmark's own input (1 KB events, `pixelpipe-bench preload`), runs
# the release worker on it with the benchmark's pipeline and batching
# (--batch-max-events=500 --queue-capacity=16), samples it with perf for a few seconds
# once it is busy, and prints the CPU per event over that window and each role's share
# of it (`pixelpipe-bench profile`). `--design pass-through` profiles the benchmark's
# ceiling the same way, so the two compare role by role. perf's call-graph sampling
# costs the process some CPU of its own, so the CPU per event here reads a little
# higher than the benchmark's.
#
#   tools/bench/profile.sh                                  pools 1/1/1/1, 6 s of samples
#   tools/bench/profile.sh --pools 2/1/2/1 --seconds 10
#   tools/bench/profile.sh --design pass-through            the ceiling
#   tools/bench/profile.sh --flamegraph docs/img/worker-flamegraph.svg
#
# Needs perf (Debian: linux-perf); --flamegraph installs inferno into the cache.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$repo"
. tests/env/common.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PIXELPIPE_CACHE/target}"

pools=1/1/1/1 seconds=6 events=1500000 flamegraph= design=worker
while [ $# -gt 0 ]; do
  case "$1" in
    --pools) pools=$2; shift 2 ;;
    --design) design=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --events) events=$2; shift 2 ;;
    --flamegraph) flamegraph=$2; shift 2 ;;
    *) die "unknown argument $1 (see the top of $0)" ;;
  esac
done
command -v perf >/dev/null || die "perf is missing: apt-get install linux-perf"
case "$design" in
  worker | pass-through | unbounded) ;;
  *) die "unknown design $design: worker, pass-through or unbounded" ;;
esac

cargo build --release --locked -p pixelpipe-worker -p pixelpipe-bench -p pixelpipe-loadgen --bins >&2
bin=$CARGO_TARGET_DIR/release
started=0 worker= work=$(mktemp -d)
cleanup() {
  if [ -n "$worker" ]; then kill "$worker" 2>/dev/null || true; fi
  if [ "$started" = 1 ]; then tests/env/kafka.sh stop >&2 || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
if [ -z "${KAFKA_BOOTSTRAP:-}" ]; then
  if ! tests/env/kafka.sh status >/dev/null 2>&1; then
    # The broker's log in memory: no disk writeback on the cores being measured.
    PIXELPIPE_KAFKA_IN_MEMORY=1 tests/env/kafka.sh start >&2
    started=1
  fi
  . "$PIXELPIPE_RUN/kafka.env"
fi

run="profile-$(date +%s)"
log "preloading $events events of the benchmark's input (6 partitions)"
for topic in insights ads audiences dlq; do
  "$bin/pixelpipe-loadgen" --bootstrap-servers "$KAFKA_BOOTSTRAP" --topic "$run.$topic" \
    --count 0 --create-partitions 6 >/dev/null
done
input=$("$bin/pixelpipe-bench" preload --bootstrap-servers "$KAFKA_BOOTSTRAP" --events "$events")
sed -E "s/topic: (insights|ads|audiences)$/topic: $run.\1/" tools/bench/pipeline.yaml >"$work/pipeline.yaml"

process=("$bin/pixelpipe-worker")
[ "$design" = worker ] || process=("$bin/pixelpipe-bench" design --design "$design")
admin=$(free_port)
PIXELPIPE_BOOTSTRAP_SERVERS=$KAFKA_BOOTSTRAP PIXELPIPE_INPUT_TOPIC=$input PIXELPIPE_GROUP=$run \
  PIXELPIPE_DEAD_LETTER_TOPIC=$run.dlq PIXELPIPE_CONFIG=$work/pipeline.yaml \
  PIXELPIPE_POOLS=$pools PIXELPIPE_BATCH_MAX_EVENTS=500 PIXELPIPE_QUEUE_CAPACITY=16 \
  PIXELPIPE_ADMIN_ADDR=127.0.0.1:$admin "${process[@]}" >"$work/worker.log" 2>&1 &
worker=$!

events_in() {
  curl -sf "http://127.0.0.1:$admin/metrics" | awk '$1 == "pixelpipe_events_in_total" { print $2 }'
}
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$worker/stat"; }
busy() { [ "$(events_in || echo 0)" -gt 0 ]; }
wait_for 60 "the worker to consume" busy
sleep 2 # past the first fetches and the pools' first batches
ticks0=$(cpu_ticks) in0=$(events_in)
log "sampling pools $pools for $seconds s"
perf record -q -F 999 --call-graph dwarf,16384 -p "$worker" -o "$work/perf.data" -- sleep "$seconds" >&2
ticks1=$(cpu_ticks) in1=$(events_in)
kill "$worker" && wait "$worker" || true
worker=

us_per_event=$(awk -v t=$((ticks1 - ticks0)) -v hz="$(getconf CLK_TCK)" -v n=$((in1 - in0)) \
  'BEGIN { printf "%.2f", t / hz * 1e6 / n }')
printf '%d events in %d s (%.0f/s), %s CPU %s us per event while sampled\n\n' \
  $((in1 - in0)) "$seconds" "$(((in1 - in0) / seconds))" "$design" "$us_per_event"
perf script -i "$work/perf.data" -F comm,tid,ip,sym 2>/dev/null >"$work/perf.txt"
"$bin/pixelpipe-bench" profile --us-per-event "$us_per_event" <"$work/perf.txt"

if [ -n "$flamegraph" ]; then
  inferno=$PIXELPIPE_CACHE/inferno/bin
  [ -x "$inferno/inferno-flamegraph" ] ||
    cargo install inferno --locked --root "$PIXELPIPE_CACHE/inferno" >&2
  perf script -i "$work/perf.data" 2>/dev/null | "$inferno/inferno-collapse-perf" |
    "$inferno/inferno-flamegraph" --minwidth 2 --title "$design, pools $pools, 1 KB events" >"$flamegraph"
  log "flame graph: $flamegraph"
fi
