# shellcheck shell=bash
# What tools/bench's scripts share: the broker, the release build, and one design
# under test started on a backlog. Sourced after tests/env/common.sh, from the
# repository's root.

bench_bin="${CARGO_TARGET_DIR:-$PIXELPIPE_CACHE/target}/release"
bench_broker_started=0
# Every design started and not yet stopped, so that an exit stops them all.
bench_pids=()

# Builds the release binaries the scripts run.
bench_build() {
  cargo build --release --locked -p pixelpipe-worker -p pixelpipe-bench -p pixelpipe-loadgen --bins >&2
}

# The broker at KAFKA_BOOTSTRAP, or the test environment's if it runs, or a fresh
# one (stopped again by bench_broker_stop) with its log in memory, so that no disk
# writeback runs on the cores being measured. Exports KAFKA_BOOTSTRAP.
bench_broker() {
  if [ -n "${KAFKA_BOOTSTRAP:-}" ]; then return 0; fi
  if ! tests/env/kafka.sh status >/dev/null 2>&1; then
    PIXELPIPE_KAFKA_IN_MEMORY=1 tests/env/kafka.sh start >&2
    bench_broker_started=1
  fi
  . "$PIXELPIPE_RUN/kafka.env"
}

# The broker's process when it runs on this machine (this script's or the test
# environment's, at KAFKA_BOOTSTRAP); nothing for a broker elsewhere.
bench_broker_pid() {
  local ours
  ours=$(. "$PIXELPIPE_RUN/kafka.env" 2>/dev/null && echo "${KAFKA_BOOTSTRAP:-}") || return 0
  [ -n "$ours" ] && [ "$ours" = "${KAFKA_BOOTSTRAP:-}" ] || return 0
  cat "$PIXELPIPE_RUN/kafka/pid" 2>/dev/null || true
}

bench_broker_stop() {
  if [ "$bench_broker_started" = 1 ]; then tests/env/kafka.sh stop >&2 || true; fi
}

# bench_preload EVENTS: the benchmark's own input (1 KB events, 6 partitions, the
# partner count in a header); prints the topic.
bench_preload() {
  "$bench_bin/pixelpipe-bench" preload --bootstrap-servers "$KAFKA_BOOTSTRAP" --events "$1"
}

# bench_backlog EVENTS: builds, takes a broker and preloads EVENTS events of the
# benchmark's input; sets bench_input (the topic) and bench_work (a temporary
# directory), and on exit stops the design and the broker it started and removes
# the directory.
bench_backlog() {
  bench_build
  bench_work=$(mktemp -d)
  trap bench_cleanup EXIT
  bench_broker
  log "preloading $1 events of the benchmark's input (6 partitions)"
  bench_input=$(bench_preload "$1")
}

bench_cleanup() {
  bench_stop
  bench_broker_stop
  rm -rf "${bench_work:-}"
}

# bench_design DESIGN[@BINDIR]: checks a design's name (worker, pass-through,
# forward or unbounded) and its other build's directory, if given, so that a script fails
# before its build and preload; sets bench_process to the command that runs it.
bench_design() {
  local design=${1%%@*} bin=$bench_bin
  if [[ $1 == *@* ]]; then
    bin=${1#*@}
    [ -d "$bin" ] || die "no build at $bin (in $1)"
  fi
  case "$design" in
    worker) bench_process=("$bin/pixelpipe-worker") ;;
    pass-through | forward | unbounded) bench_process=("$bin/pixelpipe-bench" design --design "$design") ;;
    *) die "unknown design $design: worker, pass-through, forward or unbounded" ;;
  esac
}

# bench_start DESIGN[@BINDIR] RUN INPUT DIR [ENV=VALUE...]: starts DESIGN (worker,
# pass-through, forward or unbounded; its binaries from BINDIR, another build, if given) on
# topic INPUT in the background with the benchmark's pipeline, pools 1/1/1/1 and
# batching unless the ENV settings say otherwise, as consumer group RUN with fresh
# partner topics RUN.<partner>; its config and log go to DIR. Sets bench_pid and
# bench_admin (its admin port).
bench_start() {
  local run=$2 input=$3 dir=$4 topic
  bench_design "$1"
  shift 4
  for topic in insights ads audiences dlq; do
    "$bench_bin/pixelpipe-loadgen" --bootstrap-servers "$KAFKA_BOOTSTRAP" --topic "$run.$topic" \
      --count 0 --create-partitions 6 >/dev/null
  done
  sed -E "s/topic: (insights|ads|audiences)$/topic: $run.\1/" tools/bench/pipeline.yaml >"$dir/$run.yaml"
  bench_admin=$(free_port)
  env PIXELPIPE_BOOTSTRAP_SERVERS="$KAFKA_BOOTSTRAP" PIXELPIPE_INPUT_TOPIC="$input" \
    PIXELPIPE_GROUP="$run" PIXELPIPE_DEAD_LETTER_TOPIC="$run.dlq" PIXELPIPE_CONFIG="$dir/$run.yaml" \
    PIXELPIPE_POOLS=1/1/1/1 PIXELPIPE_BATCH_MAX_EVENTS=500 PIXELPIPE_QUEUE_CAPACITY=16 \
    PIXELPIPE_ADMIN_ADDR="127.0.0.1:$bench_admin" "$@" "${bench_process[@]}" >"$dir/$run.log" 2>&1 &
  bench_pid=$!
  bench_pids+=("$bench_pid")
}

# Input messages the design under test (or the one at admin port ADMIN) has consumed.
bench_events_in() {
  curl -sf "http://127.0.0.1:${1:-$bench_admin}/metrics" |
    awk '$1 == "pixelpipe_events_in_total" { print $2 }'
}

# The design under test's (or process PID's) CPU so far, in clock ticks.
bench_cpu_ticks() { awk '{ print $14 + $15 }' "/proc/${1:-$bench_pid}/stat"; }

# bench_wait_busy [ADMIN...]: waits until the design under test (or each design at
# the admin ports given) consumes, then 2 s more: past the first fetches and the
# pools' first batches.
bench_wait_busy() {
  local admin
  # shellcheck disable=SC2317 # called by wait_for
  busy() { [ "$(bench_events_in "$admin" || echo 0)" -gt 0 ]; }
  for admin in "${@:-$bench_admin}"; do
    wait_for 60 "the design under test to consume" busy
  done
  sleep 2
}

# Stops every design started.
bench_stop() {
  local pid
  for pid in "${bench_pids[@]}"; do
    kill "$pid" 2>/dev/null && wait "$pid" || true
  done
  bench_pids=() bench_pid=
}

# bench_us_per_event TICKS EVENTS: CPU microseconds per event.
bench_us_per_event() {
  awk -v t="$1" -v hz="$(getconf CLK_TCK)" -v n="$2" 'BEGIN { printf "%.2f", t / hz * 1e6 / n }'
}
