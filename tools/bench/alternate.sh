#!/usr/bin/env bash
# Designs or settings compared on one backlog, in alternation (docs/benchmarks.md):
# preloads the benchmark's own input once (`pixelpipe-bench preload`), then runs each
# variant in turn, round after round, each with a fresh consumer group from the start
# of the backlog and fresh partner topics (deleted after its run), and prints its
# events/s and CPU per event over a window once it is busy. No perf: the numbers are
# the process's own. Variants are NAME=DESIGN[:ENV=VALUE,...], DESIGN being worker,
# pass-through or unbounded; every one runs with the benchmark's pipeline, pools
# 1/1/1/1 and batching (--batch-max-events=500 --queue-capacity=16) unless its
# settings say otherwise.
#
#   tools/bench/alternate.sh worker=worker ceiling=pass-through
#   tools/bench/alternate.sh b500=worker b200=worker:PIXELPIPE_BATCH_MAX_EVENTS=200,PIXELPIPE_MAX_IN_FLIGHT_JOBS=20
#   tools/bench/alternate.sh --rounds 5 --seconds 10 --events 3000000 a=worker b=pass-through
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$repo"
. tests/env/common.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PIXELPIPE_CACHE/target}"

rounds=3 seconds=8 events=2500000
variants=()
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --events) events=$2; shift 2 ;;
    -*) die "unknown argument $1 (see the top of $0)" ;;
    *=*) variants+=("$1"); shift ;;
    *) die "a variant is NAME=DESIGN[:ENV=VALUE,...], not $1" ;;
  esac
done
[ ${#variants[@]} -gt 0 ] || die "no variants (see the top of $0)"

cargo build --release --locked -p pixelpipe-worker -p pixelpipe-bench -p pixelpipe-loadgen --bins >&2
bin=$CARGO_TARGET_DIR/release
started=0 pid= work=$(mktemp -d)
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; fi
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

log "preloading $events events of the benchmark's input (6 partitions)"
input=$("$bin/pixelpipe-bench" preload --bootstrap-servers "$KAFKA_BOOTSTRAP" --events "$events")

events_in() {
  curl -sf "http://127.0.0.1:$1/metrics" | awk '$1 == "pixelpipe_events_in_total" { print $2 }'
}
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

# run NAME DESIGN SETTINGS ROUND: one variant's run, one line on stdout.
run() {
  local name=$1 design=$2 settings=$3 round=$4 run admin t0 t1 e0 e1
  run="alternate-$(date +%s%N)"
  for topic in insights ads audiences dlq; do
    "$bin/pixelpipe-loadgen" --bootstrap-servers "$KAFKA_BOOTSTRAP" --topic "$run.$topic" \
      --count 0 --create-partitions 6 >/dev/null
  done
  sed -E "s/topic: (insights|ads|audiences)$/topic: $run.\1/" tools/bench/pipeline.yaml >"$work/pipeline.yaml"
  local process=("$bin/pixelpipe-worker")
  [ "$design" = worker ] || process=("$bin/pixelpipe-bench" design --design "$design")
  local extra=()
  if [ -n "$settings" ]; then IFS=, read -ra extra <<<"$settings"; fi
  admin=$(free_port)
  sync
  env PIXELPIPE_BOOTSTRAP_SERVERS="$KAFKA_BOOTSTRAP" PIXELPIPE_INPUT_TOPIC="$input" \
    PIXELPIPE_GROUP="$run" PIXELPIPE_DEAD_LETTER_TOPIC="$run.dlq" PIXELPIPE_CONFIG="$work/pipeline.yaml" \
    PIXELPIPE_POOLS=1/1/1/1 PIXELPIPE_BATCH_MAX_EVENTS=500 PIXELPIPE_QUEUE_CAPACITY=16 \
    PIXELPIPE_ADMIN_ADDR="127.0.0.1:$admin" "${extra[@]}" "${process[@]}" >"$work/$name.log" 2>&1 &
  pid=$!
  busy() { [ "$(events_in "$admin" || echo 0)" -gt 0 ]; }
  wait_for 60 "$name to consume" busy
  sleep 2 # past the first fetches and the pools' first batches
  t0=$(cpu_ticks "$pid") e0=$(events_in "$admin")
  sleep "$seconds"
  t1=$(cpu_ticks "$pid") e1=$(events_in "$admin")
  kill "$pid" && wait "$pid" || true
  pid=
  awk -v n="$name" -v r="$round" -v t=$((t1 - t0)) -v hz="$(getconf CLK_TCK)" -v e=$((e1 - e0)) -v s="$seconds" \
    'BEGIN { printf "%-12s round %d: %7.0f events/s, %5.2f us/event\n", n, r, e / s, t / hz * 1e6 / e }'
  "$bin/pixelpipe-bench" delete-topics --bootstrap-servers "$KAFKA_BOOTSTRAP" \
    "$run.insights" "$run.ads" "$run.audiences" "$run.dlq"
}

for round in $(seq "$rounds"); do
  for v in "${variants[@]}"; do
    name=${v%%=*} spec=${v#*=}
    design=${spec%%:*} settings=
    [ "$spec" = "$design" ] || settings=${spec#*:}
    run "$name" "$design" "$settings" "$round"
  done
done
"$bin/pixelpipe-bench" delete-topics --bootstrap-servers "$KAFKA_BOOTSTRAP" "$input"
