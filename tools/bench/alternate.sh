#!/usr/bin/env bash
# Designs or settings compared on one backlog, in alternation (docs/benchmarks.md):
# preloads the benchmark's own input once (`pixelpipe-bench preload`), then runs each
# variant in turn, round after round, each with a fresh consumer group from the start
# of the backlog and fresh partner topics (deleted after its run), and prints its
# events/s and CPU per event over a window once it is busy; at the end, a table of
# each variant's medians and its CPU per event over the first variant's, taken within
# each round (median and range), and the broker's CPU per event over the same window
# (the broker this script started, or the test environment's): on these two cores it
# moves more from run to run than any design does. No perf: the numbers are the
# processes' own.
# Variants are NAME=DESIGN[@BINDIR][:ENV=VALUE,...], DESIGN being worker, pass-through
# (the ceiling: as many bytes as the partner payload), forward (the input's own bytes)
# or unbounded, BINDIR another build's binaries (a release build with other settings);
# every one runs with the benchmark's pipeline, pools 1/1/1/1 and batching
# (--batch-max-events=500 --queue-capacity=16) unless its settings say otherwise.
#
#   tools/bench/alternate.sh worker=worker ceiling=pass-through
#   tools/bench/alternate.sh b500=worker b200=worker:PIXELPIPE_BATCH_MAX_EVENTS=200,PIXELPIPE_MAX_IN_FLIGHT_JOBS=20
#   tools/bench/alternate.sh lto=worker@/tmp/lto/release plain=worker
#   tools/bench/alternate.sh --rounds 5 --seconds 10 --events 3000000 a=worker b=pass-through
#
# --warm-up S (90 unless given) first runs the first variant S seconds, not counted: a
# fresh broker's CPU per event falls from about 10 us to about 3.5 over its first
# minutes of load (docs/benchmarks.md, the nineteenth session), more than any design
# differs from another.
#
# --together runs a round's variants at once instead, each in its own consumer group on
# the backlog, and reads their CPU and events over the same window: whatever the VM
# does meanwhile hits every variant alike, which taking turns cannot promise (this
# VM's speed moves by 10-30 % from one minute to the next). They share the cores, so
# absolute numbers read higher and events/s lower than alone; the ratios are what it
# is for. Two variants at most, since the broker needs a share of the two cores too.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$repo"
. tests/env/common.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PIXELPIPE_CACHE/target}"

rounds=3 seconds=8 events=2500000 together=0 warm_up=90
variants=()
while [ $# -gt 0 ]; do
  case "$1" in
    --together) together=1; shift ;;
    --rounds) rounds=$2; shift 2 ;;
    --warm-up) warm_up=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --events) events=$2; shift 2 ;;
    -*) die "unknown argument $1 (see the top of $0)" ;;
    *=*) variants+=("$1"); shift ;;
    *) die "a variant is NAME=DESIGN[@BINDIR][:ENV=VALUE,...], not $1" ;;
  esac
done
[ ${#variants[@]} -gt 0 ] || die "no variants (see the top of $0)"
[ "$together" = 0 ] || [ ${#variants[@]} -le 2 ] || die "--together takes two variants at most"

. tools/bench/lib.sh

for v in "${variants[@]}"; do
  spec=${v#*=}
  bench_design "${spec%%:*}"
done
bench_backlog "$events"

# summarize FIRST: a Markdown table of the runs' lines on stdin, each variant's medians
# and its CPU per event over FIRST's within each round: the median of those ratios,
# with their range.
summarize() {
  awk -v first="$1" '
    function median(a, n,   i, j, t) {
      for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j - 1] > a[j]; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
      return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    { name = $1; round = $3 + 0; eps[name, round] = $4; us[name, round] = $6; broker[name, round] = $9
      if (!(name in seen)) { seen[name] = 1; order[++names] = name }
      if (round > rounds) rounds = round }
    END {
      print "| variant | runs | events/s, median | CPU us/event, median | CPU vs " first ", median (range) | broker CPU us/event, median |"
      print "| --- | --: | --: | --: | --: | --: |"
      for (v = 1; v <= names; v++) {
        name = order[v]; n = 0; k = 0; delete e; delete c; delete r; delete b
        for (i = 1; i <= rounds; i++) {
          if (!((name, i) in us)) continue
          n++; e[n] = eps[name, i]; c[n] = us[name, i]; b[n] = broker[name, i]
          if ((first, i) in us && us[first, i] > 0) r[++k] = us[name, i] / us[first, i]
        }
        lo = hi = r[1]; for (i = 2; i <= k; i++) { if (r[i] < lo) lo = r[i]; if (r[i] > hi) hi = r[i] }
        printf "| %s | %d | %.0f | %.2f | %.2fx (%.2f-%.2f) | %s |\n", name, n, median(e, n), median(c, n), median(r, k), lo, hi, b[1] == "-" ? "-" : sprintf("%.2f", median(b, n))
      }
    }'
}

# start NAME SPEC: starts one variant (SPEC is DESIGN[@BINDIR][:ENV=VALUE,...]) on the
# backlog as a consumer group of its own; sets run (the group).
start() {
  local name=$1 spec=$2 design settings extra=()
  design=${spec%%:*} settings=
  [ "$spec" = "$design" ] || settings=${spec#*:}
  if [ -n "$settings" ]; then IFS=, read -ra extra <<<"$settings"; fi
  run="alternate-$name-$(date +%s%N)"
  bench_start "$design" "$run" "$bench_input" "$bench_work" "${extra[@]}"
}

# report NAME ROUND TICKS EVENTS BROKER_TICKS: one variant's line on stdout and in
# the results summarize reads; the broker's ticks are - when its process is unknown.
report() {
  local broker=-
  [ "$5" = - ] || broker=$(bench_us_per_event "$5" "$4")
  printf '%-12s round %d: %7d events/s, %s us/event, broker %s us/event\n' "$1" "$2" \
    $(($4 / seconds)) "$(bench_us_per_event "$3" "$4")" "$broker" | tee -a "$bench_work/results"
}

# The broker's CPU so far, in clock ticks, or - when it is not a process here.
broker_ticks() {
  local pid
  pid=$(bench_broker_pid)
  if [ -n "$pid" ] && bench_cpu_ticks "$pid" 2>/dev/null; then return 0; fi
  echo -
}

# ticks_between BEFORE AFTER: the difference, or - if either is unknown.
ticks_between() {
  if [ "$1" = - ] || [ "$2" = - ]; then echo -; else echo $(($2 - $1)); fi
}

# delete_outputs RUN: the partner and dead-letter topics of one variant's run.
delete_outputs() {
  "$bench_bin/pixelpipe-bench" delete-topics --bootstrap-servers "$KAFKA_BOOTSTRAP" \
    "$1.insights" "$1.ads" "$1.audiences" "$1.dlq"
}

# round_in_turn ROUND VARIANT...: each variant alone, one after the other. It runs in
# this shell, so that an interrupted run's design is stopped by the cleanup on exit.
round_in_turn() {
  local round=$1 v t0 t1 e0 e1
  shift
  for v in "$@"; do
    sync
    start "${v%%=*}" "${v#*=}"
    bench_wait_busy
    t0=$(bench_cpu_ticks) e0=$(bench_events_in) k0=$(broker_ticks)
    sleep "$seconds"
    t1=$(bench_cpu_ticks) e1=$(bench_events_in) k1=$(broker_ticks)
    bench_stop
    report "${v%%=*}" "$round" $((t1 - t0)) $((e1 - e0)) "$(ticks_between "$k0" "$k1")"
    delete_outputs "$run"
  done
}

# round_together ROUND VARIANT...: every variant at once, measured over one window.
round_together() {
  local round=$1 v i k0 k1 window share all=0 names=() pids=() admins=() runs=() t0=() e0=() t1=() e1=()
  shift
  sync
  for v in "$@"; do
    start "${v%%=*}" "${v#*=}"
    names+=("${v%%=*}") pids+=("$bench_pid") admins+=("$bench_admin") runs+=("$run")
  done
  bench_wait_busy "${admins[@]}"
  k0=$(broker_ticks)
  for i in "${!pids[@]}"; do
    t0[i]=$(bench_cpu_ticks "${pids[i]}") e0[i]=$(bench_events_in "${admins[i]}")
  done
  sleep "$seconds"
  for i in "${!pids[@]}"; do
    t1[i]=$(bench_cpu_ticks "${pids[i]}") e1[i]=$(bench_events_in "${admins[i]}")
    all=$((all + e1[i] - e0[i]))
  done
  k1=$(broker_ticks)
  bench_stop
  window=$(ticks_between "$k0" "$k1")
  for i in "${!pids[@]}"; do
    # The broker served both at once: each its share of the window's events.
    share=$window
    [ "$window" = - ] || [ "$all" = 0 ] || share=$((window * (e1[i] - e0[i]) / all))
    report "${names[i]}" "$round" $((t1[i] - t0[i])) $((e1[i] - e0[i])) "$share"
    delete_outputs "${runs[i]}"
  done
}

# warm_broker: the first variant for warm_up seconds, not counted, in runs as long as
# a round's (each on a fresh group, so that none runs out of backlog).
warm_broker() {
  local v=${variants[0]} until=$((SECONDS + warm_up))
  [ "$warm_up" -gt 0 ] || return 0
  log "warming the broker: ${v%%=*} for $warm_up s, not counted"
  while [ "$SECONDS" -lt "$until" ]; do
    start "${v%%=*}" "${v#*=}"
    bench_wait_busy
    sleep "$seconds"
    bench_stop
    delete_outputs "$run"
  done
}

warm_broker
# Each round starts one variant later than the last (AB, BA, ...), so the position in
# a round and drift over the rounds hit every variant alike (together, so that each
# is started first as often).
n=${#variants[@]}
for round in $(seq "$rounds"); do
  order=()
  for i in $(seq 0 $((n - 1))); do order+=("${variants[$(((i + round - 1) % n))]}"); done
  if [ "$together" = 1 ]; then
    round_together "$round" "${order[@]}"
  else
    round_in_turn "$round" "${order[@]}"
  fi
done
"$bench_bin/pixelpipe-bench" delete-topics --bootstrap-servers "$KAFKA_BOOTSTRAP" "$bench_input"
echo
summarize "${variants[0]%%=*}" <"$bench_work/results"
