# Shared helpers for the scripts that start the real services the tests use.
# Sourced, not run.

# Slow things (jars, Go binaries, cargo's target dir) live outside the repo so a
# second run on the same machine is fast; nothing depends on them being there.
PIXELPIPE_CACHE="${PIXELPIPE_CACHE:-$HOME/.cache/pixelpipe}"
# Running services keep their state and an env file here.
PIXELPIPE_RUN="${PIXELPIPE_RUN:-${TMPDIR:-/tmp}/pixelpipe-run-$(id -u)}"
export PIXELPIPE_CACHE PIXELPIPE_RUN

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# Services run under `setsid`: a Ctrl-C in the terminal then reaches the
# programs using them, which stop first, and the scripts stop the services
# after them (the background jobs of a script share its process group).

# Prints a TCP port on 127.0.0.1 that nothing listens on right now.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# wait_for SECONDS DESCRIPTION COMMAND...: retries COMMAND once a second.
wait_for() {
  local secs=$1 what=$2; shift 2
  local i
  for ((i = 0; i < secs; i++)); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 1
  done
  return 1
}

# port_open PORT [ADDRESS]: something listens on ADDRESS (127.0.0.1):PORT.
port_open() { (exec 3<>"/dev/tcp/${2:-127.0.0.1}/$1") 2>/dev/null; }

# The real node's pod network (tests/env/node.sh): a bridge confined to this
# machine. Its gateway address is the node's address, where pods reach the
# API server and the broker.
PIXELPIPE_POD_BRIDGE=pixelpipe0
PIXELPIPE_POD_SUBNET=10.213.77.0/24
PIXELPIPE_NODE_IP=10.213.77.1

# pod_network_up: the bridge exists with the node's address.
pod_network_up() { ip -4 -o addr show dev "$PIXELPIPE_POD_BRIDGE" 2>/dev/null | grep -q " $PIXELPIPE_NODE_IP/"; }

# stop_pid FILE: TERM, then KILL after a grace period, the process named in FILE.
stop_pid() {
  local file=$1 pid i
  [ -f "$file" ] || return 0
  pid=$(cat "$file")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 30; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.5
    done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$file"
}
