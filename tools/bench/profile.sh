#!/usr/bin/env bash
# Where the worker's CPU goes (docs/benchmarks.md, "Where the CPU goes"): preloads a
# backlog of the benchmark's own input (1 KB events, `pixelpipe-bench preload`), runs
# the release worker on it with the benchmark's pipeline and batching
# (--batch-max-events=500 --queue-capacity=16), samples it with perf for a few seconds
# once it is busy, and prints the CPU per event over that window and each role's share
# of it (`pixelpipe-bench profile`). `--design pass-through` profiles the benchmark's
# ceiling the same way, so the two compare role by role; `--design forward` the
# pass-through of the input's own bytes. perf's call-graph sampling
# costs the process some CPU of its own, so the CPU per event here reads a little
# higher than the benchmark's.
#
#   tools/bench/profile.sh                                  pools 1/1/1/1, 6 s of samples
#   tools/bench/profile.sh --pools 2/1/2/1 --seconds 10
#   tools/bench/profile.sh --design pass-through            the ceiling
#   tools/bench/profile.sh --design forward                 the input's bytes, unchanged
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
. tools/bench/lib.sh

bench_design "$design"
bench_backlog "$events"
bench_start "$design" "profile-$(date +%s)" "$bench_input" "$bench_work" PIXELPIPE_POOLS="$pools"
bench_wait_busy
ticks0=$(bench_cpu_ticks) in0=$(bench_events_in)
log "sampling pools $pools for $seconds s"
perf record -q -F 999 --call-graph dwarf,16384 -p "$bench_pid" -o "$bench_work/perf.data" -- sleep "$seconds" >&2
ticks1=$(bench_cpu_ticks) in1=$(bench_events_in)
bench_stop

us_per_event=$(bench_us_per_event $((ticks1 - ticks0)) $((in1 - in0)))
printf '%d events in %d s (%.0f/s), %s CPU %s us per event while sampled\n\n' \
  $((in1 - in0)) "$seconds" "$(((in1 - in0) / seconds))" "$design" "$us_per_event"
perf script -i "$bench_work/perf.data" -F comm,tid,ip,sym 2>/dev/null >"$bench_work/perf.txt"
"$bench_bin/pixelpipe-bench" profile --us-per-event "$us_per_event" <"$bench_work/perf.txt"

if [ -n "$flamegraph" ]; then
  inferno=$PIXELPIPE_CACHE/inferno/bin
  [ -x "$inferno/inferno-flamegraph" ] ||
    cargo install inferno --locked --root "$PIXELPIPE_CACHE/inferno" >&2
  perf script -i "$bench_work/perf.data" 2>/dev/null | "$inferno/inferno-collapse-perf" |
    "$inferno/inferno-flamegraph" --minwidth 2 --title "$design, pools $pools, 1 KB events" >"$flamegraph"
  log "flame graph: $flamegraph"
fi
