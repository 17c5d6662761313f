#!/usr/bin/env bash
# Designs or settings compared on one backlog, in alternation (docs/benchmarks.md):
# preloads the benchmark's own input once (`pixelpipe-bench preload`), then runs each
# variant in turn, round after round, each with a fresh consumer group from the start
# of the backlog and fresh partner topics (deleted after its run), and prints its
# events/s and CPU per event over a window once it is busy; at the end, a table of
# each variant's medians and its CPU per event over the first variant's, taken within
# each round (median and range). No perf: the numbers are the process's own.
# Variants are NAME=DESIGN[@BINDIR][:ENV=VALUE,...], DESIGN being worker, pass-through
# or unbounded, BINDIR another build's binaries (a release build with other settings);
# every one runs with the benchmark's pipeline, pools 1/1/1/1 and batching
# (--batch-max-events=500 --queue-capacity=16) unless its settings say otherwise.
#
#   tools/bench/alternate.sh worker=worker ceiling=pass-through
#   tools/bench/alternate.sh b500=worker b200=worker:PIXELPIPE_BATCH_MAX_EVENTS=200,PIXELPIPE_MAX_IN_FLIGHT_JOBS=20
#   tools/bench/alternate.sh lto=worker@/tmp/lto/release plain=worker
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
    *) die "a variant is NAME=DESIGN[@BINDIR][:ENV=VALUE,...], not $1" ;;
  esac
done
[ ${#variants[@]} -gt 0 ] || die "no variants (see the top of $0)"

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
    { name = $1; round = $3 + 0; eps[name, round] = $4; us[name, round] = $6
      if (!(name in seen)) { seen[name] = 1; order[++names] = name }
      if (round > rounds) rounds = round }
    END {
      print "| variant | runs | events/s, median | CPU us/event, median | CPU vs " first ", median (range) |"
      print "| --- | --: | --: | --: | --: |"
      for (v = 1; v <= names; v++) {
        name = order[v]; n = 0; k = 0; delete e; delete c; delete r
        for (i = 1; i <= rounds; i++) {
          if (!((name, i) in us)) continue
          n++; e[n] = eps[name, i]; c[n] = us[name, i]
          if ((first, i) in us && us[first, i] > 0) r[++k] = us[name, i] / us[first, i]
        }
        lo = hi = r[1]; for (i = 2; i <= k; i++) { if (r[i] < lo) lo = r[i]; if (r[i] > hi) hi = r[i] }
        printf "| %s | %d | %.0f | %.2f | %.2fx (%.2f-%.2f) |\n", name, n, median(e, n), median(c, n), median(r, k), lo, hi
      }
    }'
}

# run NAME DESIGN SETTINGS ROUND: one variant's run, one line on stdout and in the
# results summarize reads. It runs in this shell, so that an interrupted run's design
# is stopped by the cleanup on exit.
run() {
  local name=$1 design=$2 settings=$3 round=$4 run t0 t1 e0 e1 extra=()
  run="alternate-$(date +%s%N)"
  if [ -n "$settings" ]; then IFS=, read -ra extra <<<"$settings"; fi
  sync
  bench_start "$design" "$run" "$bench_input" "$bench_work" "${extra[@]}"
  bench_wait_busy
  t0=$(bench_cpu_ticks) e0=$(bench_events_in)
  sleep "$seconds"
  t1=$(bench_cpu_ticks) e1=$(bench_events_in)
  bench_stop
  printf '%-12s round %d: %7d events/s, %s us/event\n' "$name" "$round" \
    $(((e1 - e0) / seconds)) "$(bench_us_per_event $((t1 - t0)) $((e1 - e0)))" |
    tee -a "$bench_work/results"
  "$bench_bin/pixelpipe-bench" delete-topics --bootstrap-servers "$KAFKA_BOOTSTRAP" \
    "$run.insights" "$run.ads" "$run.audiences" "$run.dlq"
}

# Each round starts one variant later than the last (AB, BA, ...), so the position in
# a round and drift over the rounds hit every variant alike.
n=${#variants[@]}
for round in $(seq "$rounds"); do
  for i in $(seq 0 $((n - 1))); do
    v=${variants[$(((i + round - 1) % n))]}
    name=${v%%=*} spec=${v#*=}
    design=${spec%%:*} settings=
    [ "$spec" = "$design" ] || settings=${spec#*:}
    run "$name" "$design" "$settings" "$round"
  done
done
"$bench_bin/pixelpipe-bench" delete-topics --bootstrap-servers "$KAFKA_BOOTSTRAP" "$bench_input"
echo
summarize "${variants[0]%%=*}" <"$bench_work/results"
