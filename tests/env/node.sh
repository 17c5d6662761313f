#!/usr/bin/env bash
# A real Kubernetes node on this machine: containerd and runc run pods as
# containers, a kubelet registers the node, kube-scheduler places pods and
# kube-proxy routes Services, next to a control plane of their own (etcd,
# kube-apiserver and kube-controller-manager with every default controller,
# from tests/env/kube.sh). The Kubernetes binaries build from the Go module
# proxy like the rest (tests/env/kube-apiserver); containerd, runc and the CNI
# plugins are Debian's.
#
#   tests/env/node.sh packages install Debian's containerd, runc and CNI plugins
#                              when missing
#   tests/env/node.sh start    start it all; writes $PIXELPIPE_RUN/node.env
#                              (KUBECONFIG, PATH with kubectl, CONTAINERD_ADDRESS,
#                              PIXELPIPE_NODE_IP)
#   tests/env/node.sh load BIN_DIR   build the worker, operator and pause images
#                              from release binaries (tests/env/images.sh) and
#                              import them into the node's containerd
#   tests/env/node.sh stop     stop it all, delete the pods, their network and
#                              everything it wrote, and restore the machine's settings
#   tests/env/node.sh status   print node.env's variables if the node runs
#   tests/env/node.sh health   which of its processes run, the node's conditions
#                              and taints, the kubelet's last errors
#
# Needs root (containers, a bridge, iptables). The pod network is a bridge,
# $PIXELPIPE_POD_BRIDGE, with $PIXELPIPE_POD_SUBNET (tests/env/common.sh) and no
# route off the machine: pods get routes to their subnet and to the Service
# range only, nothing is masqueraded, and forwarding in or out of the bridge is
# dropped. The bridge's address is the node's address: the API server listens
# there, and tests/env/kafka.sh adds a broker listener there when the bridge is
# up before it starts (KAFKA_POD_BOOTSTRAP), so start the node first.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=common.sh
. "$here/common.sh"

DIR="$PIXELPIPE_RUN/node"
# The control plane's (kube.sh with PIXELPIPE_KUBE_NODE=1).
KUBE_DIR="$PIXELPIPE_RUN/node-kube"
ENV_FILE="$PIXELPIPE_RUN/node.env"
NODE_NAME=pixelpipe-node
SOCK="$DIR/containerd/containerd.sock"
SERVICE_RANGE=10.0.0.0/24
# What the kubelet changes on the machine (it tunes a host it owns) and this
# script puts back, and what the bridge plugin turns on.
SYSCTLS=(vm.overcommit_memory kernel.panic kernel.panic_on_oops net.ipv4.ip_forward)
# Directories the kubelet, containerd and the CNI plugins write whatever their
# own roots say.
HOST_DIRS=(/var/lib/kubelet /var/log/containers /var/log/pods /var/run/netns /var/lib/cni)

kube() { PIXELPIPE_KUBE_NODE=1 "$here/kube.sh" "$@"; }
kc() { "$KUBECTL" --kubeconfig "$KUBE_DIR/kubeconfig" "$@"; }
running() { [ -f "$DIR/$1.pid" ] && kill -0 "$(cat "$DIR/$1.pid")" 2>/dev/null; }

# KUBECTL, KUBELET, SCHEDULER, KUBE_PROXY
eval "$("$here/kube.sh" paths)"

# Debian's containerd, runc and CNI plugins (and the tools to wire them), when
# any is missing.
packages() {
  local missing=()
  command -v containerd >/dev/null || missing+=(containerd)
  command -v runc >/dev/null || missing+=(runc)
  [ -x /usr/lib/cni/bridge ] || missing+=(containernetworking-plugins)
  command -v iptables >/dev/null || missing+=(iptables)
  command -v ip >/dev/null || missing+=(iproute2)
  command -v cc >/dev/null || missing+=(build-essential)
  [ ${#missing[@]} -eq 0 ] && return 0
  command -v apt-get >/dev/null || die "missing: ${missing[*]} (install them; this script knows apt-get only)"
  log "installing: ${missing[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

preflight() {
  [ "$(id -u)" = 0 ] || die "the node needs root (containers, a bridge, iptables)"
  local c
  for c in containerd containerd-shim-runc-v2 runc ctr ip iptables; do
    command -v "$c" >/dev/null || die "$c is missing: apt-get install containerd runc iproute2 iptables"
  done
  [ -x /usr/lib/cni/bridge ] || die "the CNI plugins are missing: apt-get install containernetworking-plugins"
}

# The machine's settings before the node touches them, kept once per start.
save_sysctls() {
  local k
  for k in "${SYSCTLS[@]}"; do printf '%s=%s\n' "$k" "$(sysctl -n "$k")"; done >"$DIR/sysctls.saved"
  local d
  for d in "${HOST_DIRS[@]}"; do [ -e "$d" ] && echo "$d"; done >"$DIR/host-dirs.saved" || true
}

restore_sysctls() {
  [ -f "$DIR/sysctls.saved" ] || return 0
  local line
  while read -r line; do sysctl -q -w "$line" >/dev/null || log "could not restore $line"; done <"$DIR/sysctls.saved"
}

# Forwarding in or out of the bridge is dropped (the bridge plugin turns
# forwarding on); traffic between pods on the bridge stays allowed.
forward_rule() {
  local dir=$1
  local in=(-i "$PIXELPIPE_POD_BRIDGE" ! -o "$PIXELPIPE_POD_BRIDGE")
  [ "$dir" = out ] && in=(! -i "$PIXELPIPE_POD_BRIDGE" -o "$PIXELPIPE_POD_BRIDGE")
  echo FORWARD "${in[@]}" -m comment --comment pixelpipe-node -j DROP
}

forward_rules_off() {
  local dir
  for dir in in out; do
    # shellcheck disable=SC2046 # the rule's words
    while iptables -D $(forward_rule "$dir") 2>/dev/null; do :; done
  done
}

# First in FORWARD, so before any chain kube-proxy put there (it only adds its
# jumps when they are missing).
forward_rules_on() {
  forward_rules_off
  local dir
  # shellcheck disable=SC2046
  for dir in in out; do iptables -I $(forward_rule "$dir"); done
}

network_up() {
  if ! ip link show "$PIXELPIPE_POD_BRIDGE" >/dev/null 2>&1; then
    ip link add "$PIXELPIPE_POD_BRIDGE" type bridge
  fi
  pod_network_up || ip addr add "$PIXELPIPE_NODE_IP/${PIXELPIPE_POD_SUBNET#*/}" dev "$PIXELPIPE_POD_BRIDGE"
  ip link set "$PIXELPIPE_POD_BRIDGE" up
  forward_rules_on
  mkdir -p "$DIR/cni/net.d" "$DIR/cni/ipam"
  # Routes to the subnet (the bridge) and the Service range (kube-proxy's
  # rules on the host) only: no default route, so nothing leaves the machine.
  cat >"$DIR/cni/net.d/10-pixelpipe.conflist" <<CNI
{
  "cniVersion": "0.4.0",
  "name": "pixelpipe",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$PIXELPIPE_POD_BRIDGE",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$DIR/cni/ipam",
        "ranges": [[{"subnet": "$PIXELPIPE_POD_SUBNET", "gateway": "$PIXELPIPE_NODE_IP"}]],
        "routes": [{"dst": "$SERVICE_RANGE", "gw": "$PIXELPIPE_NODE_IP"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
CNI
}

network_down() {
  forward_rules_off
  ip link del "$PIXELPIPE_POD_BRIDGE" 2>/dev/null || true
}

start_containerd() {
  mkdir -p "$DIR/containerd"
  # restrict_oom_score_adj: processes here lack CAP_SYS_RESOURCE, so runc may
  # not lower a container's oom_score_adj; without it every sandbox fails
  # with "can't get final child's PID from pipe: EOF".
  cat >"$DIR/containerd/config.toml" <<TOML
version = 2
root = "$DIR/containerd/root"
state = "$DIR/containerd/state"
[grpc]
  address = "$SOCK"
[plugins."io.containerd.internal.v1.opt"]
  path = "$DIR/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "pixelpipe.local/pause:1"
  restrict_oom_score_adj = true
  disable_apparmor = true
  stream_server_address = "127.0.0.1"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$DIR/cni/net.d"
TOML
  log "starting containerd $(containerd --version | awk '{print $3}')"
  nohup setsid containerd --config "$DIR/containerd/config.toml" >>"$DIR/containerd.log" 2>&1 </dev/null &
  echo $! >"$DIR/containerd.pid"
  wait_for 30 containerd ctr --address "$SOCK" version ||
    { tail -n 30 "$DIR/containerd.log" >&2; die "containerd did not start (logs in $DIR)"; }
}

start_scheduler() {
  log "starting kube-scheduler"
  nohup setsid "$SCHEDULER" --kubeconfig "$KUBE_DIR/kubeconfig" --leader-elect=false --secure-port 0 \
    >>"$DIR/scheduler.log" 2>&1 </dev/null &
  echo $! >"$DIR/scheduler.pid"
}

# iptables mode, leaving the machine's conntrack settings and route_localnet
# alone (localhostNodePorts would turn it on).
start_proxy() {
  cat >"$DIR/kube-proxy.yaml" <<YAML
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: "$KUBE_DIR/kubeconfig"}
hostnameOverride: $NODE_NAME
bindAddress: $PIXELPIPE_NODE_IP
clusterCIDR: $PIXELPIPE_POD_SUBNET
mode: iptables
iptables: {localhostNodePorts: false}
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
nodePortAddresses: [primary]
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
YAML
  log "starting kube-proxy"
  nohup setsid "$KUBE_PROXY" --config "$DIR/kube-proxy.yaml" >>"$DIR/kube-proxy.log" 2>&1 </dev/null &
  echo $! >"$DIR/kube-proxy.pid"
}

# A kubelet for a machine it shares: cgroupfs (no systemd), cgroup v1
# allowed, swap allowed, no oom_score_adj of its own (no CAP_SYS_RESOURCE),
# no iptables chains, no resolv.conf copied into pods (no cluster DNS; nothing
# here resolves names off the machine), image GC and eviction loosened for a
# shared disk, and only the API server (with its client certificate) may use
# its port.
start_kubelet() {
  mkdir -p "$DIR/kubelet" "$DIR/pod-logs"
  cat >"$DIR/kubelet.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $PIXELPIPE_NODE_IP
port: 10250
healthzBindAddress: 127.0.0.1
healthzPort: 10248
containerRuntimeEndpoint: unix://$SOCK
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
makeIPTablesUtilChains: false
oomScoreAdj: 0
resolvConf: ""
podLogsDir: $DIR/pod-logs
maxPods: 40
serializeImagePulls: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: 100Mi, nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
  x509: {clientCAFile: "$KUBE_DIR/kubelet-ca.crt"}
authorization: {mode: AlwaysAllow}
YAML
  log "starting the kubelet (node $NODE_NAME at $PIXELPIPE_NODE_IP)"
  nohup setsid "$KUBELET" --config "$DIR/kubelet.yaml" --kubeconfig "$KUBE_DIR/kubeconfig" \
    --root-dir "$DIR/kubelet" --cert-dir "$DIR/kubelet/pki" \
    --hostname-override "$NODE_NAME" --node-ip "$PIXELPIPE_NODE_IP" \
    >>"$DIR/kubelet.log" 2>&1 </dev/null &
  echo $! >"$DIR/kubelet.pid"
}

node_ready() {
  running kubelet || return 1
  [ "$(kc get node "$NODE_NAME" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}')" = True ]
}

start() {
  preflight
  kube build
  if running kubelet && [ -f "$ENV_FILE" ]; then
    log "the node already runs"
    return 0
  fi
  stop
  mkdir -p "$DIR"
  save_sysctls
  network_up
  kube start
  start_containerd
  start_scheduler
  start_proxy
  start_kubelet
  local t0=$SECONDS
  if ! wait_for 90 "node Ready" node_ready; then
    tail -n 40 "$DIR/kubelet.log" >&2
    die "the node did not become Ready within 90 s (logs in $DIR)"
  fi
  # The kubelet has set its sysctls by the time the node is Ready.
  restore_sysctls
  forward_rules_on
  log "node $NODE_NAME is Ready ($((SECONDS - t0)) s after the kubelet started)"
  {
    cat "$KUBE_DIR.env"
    printf 'export CONTAINERD_ADDRESS=%s\n' "$SOCK"
    printf 'export PIXELPIPE_NODE_IP=%s\n' "$PIXELPIPE_NODE_IP"
  } >"$ENV_FILE"
  log "the node is up: source $ENV_FILE"
}

image_digests() {
  ctr --address "$SOCK" -n k8s.io images ls 2>/dev/null | awk 'NR > 1 {print $1, $3}' | sort
}

load() {
  local bin_dir=${1:?usage: node.sh load BIN_DIR}
  running containerd || die "the node is not running (tests/env/node.sh start)"
  "$here/images.sh" build "$bin_dir" "$PIXELPIPE_CACHE/images"
  local before after name
  before=$(image_digests)
  "$here/images.sh" import "$PIXELPIPE_CACHE/images" "$SOCK"
  after=$(image_digests)
  # A pod keeps the image it started with; one that runs a tag just replaced
  # would run yesterday's build. Its controller starts it again on the new one.
  for name in $(comm -13 <(echo "$before") <(echo "$after") | awk '{print $1}'); do
    kc get pods -A -o jsonpath='{range .items[*]}{.metadata.namespace} {.metadata.name} {.spec.containers[*].image}{"\n"}{end}' |
      awk -v img="$name" '{for (i = 3; i <= NF; i++) if ($i == img) print $1, $2}' |
      while read -r ns pod; do
        log "restarting pod $ns/$pod: its image $name was rebuilt"
        kc delete pod -n "$ns" "$pod" --wait=false >/dev/null
      done
  done
}

# Containers outlive the kubelet and containerd (their shims are separate
# processes): kill them through containerd, then whatever shim is left.
remove_containers() {
  running containerd || return 0
  local id
  for id in $(ctr --address "$SOCK" -n k8s.io tasks ls -q 2>/dev/null); do
    ctr --address "$SOCK" -n k8s.io tasks kill -s SIGKILL "$id" >/dev/null 2>&1 || true
  done
  sleep 1
  for id in $(ctr --address "$SOCK" -n k8s.io tasks ls -q 2>/dev/null); do
    ctr --address "$SOCK" -n k8s.io tasks delete -f "$id" >/dev/null 2>&1 || true
  done
}

unmount_under() {
  local m d
  # /proc/self/mounts names the real path (/var/run is a link to /run).
  d=$(readlink -f "$1")
  awk -v d="$d" 'index($2, d) == 1 {print $2}' /proc/self/mounts | sort -r | while read -r m; do
    umount -l "$m" 2>/dev/null || true
  done
}

# The cgroups the kubelet made for its pods, deepest first.
remove_cgroups() {
  local root
  for root in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods; do
    [ -d "$root" ] || continue
    find "$root" -depth -type d -exec rmdir {} + 2>/dev/null || true
  done
}

# Whatever of HOST_DIRS did not exist before the node started.
remove_host_dirs() {
  local d
  for d in "${HOST_DIRS[@]}"; do
    if [ -f "$DIR/host-dirs.saved" ] && grep -qx "$d" "$DIR/host-dirs.saved"; then continue; fi
    [ "$d" = /var/run/netns ] && unmount_under /var/run/netns
    rm -rf "$d" || log "could not remove $d"
  done
}

stop() {
  [ -d "$DIR" ] || { network_down; return 0; }
  log "stopping the node"
  stop_pid "$DIR/kubelet.pid"
  remove_containers
  stop_pid "$DIR/kube-proxy.pid"
  "$KUBE_PROXY" --cleanup >/dev/null 2>&1 || true
  stop_pid "$DIR/scheduler.pid"
  stop_pid "$DIR/containerd.pid"
  pkill -KILL -f "containerd-shim-runc-v2 .*-address $SOCK" 2>/dev/null || true
  unmount_under "$DIR/"
  remove_cgroups
  remove_host_dirs
  network_down
  restore_sysctls
  kube stop
  rm -rf "$DIR" "$ENV_FILE"
}

status() {
  running kubelet && [ -f "$ENV_FILE" ] || { echo "the node is not running" >&2; return 1; }
  sed -n 's/^export //p' "$ENV_FILE"
}

# A short account of the node for a failed run's log: which of its processes
# still run, the node's conditions and taints as the API server has them, and
# the kubelet's last errors. It reads; it changes nothing.
health() {
  [ -d "$DIR" ] || { echo "the node is not running"; return 0; }
  local p state
  for p in containerd kubelet scheduler kube-proxy; do
    state=stopped
    if running "$p"; then state=running; fi
    echo "node: $p $state"
  done
  kc get node "$NODE_NAME" --request-timeout 10s -o jsonpath='node: conditions {range .status.conditions[*]}{.type}={.status} ({.message}) {end}{"\n"}node: taints {.spec.taints}{"\n"}' 2>&1 || true
  # The kubelet's periodic complaint about its own oom_score_adj (it may not
  # set it here) is noise.
  echo "node: the kubelet's last errors ($DIR/kubelet.log):"
  grep '^E' "$DIR/kubelet.log" 2>/dev/null | grep -v 'oom score' | tail -n 8 | cut -c1-300 || true
  echo "node: containerd's last errors ($DIR/containerd.log):"
  grep 'level=error' "$DIR/containerd.log" 2>/dev/null | tail -n 4 | cut -c1-300 || true
}

case "${1:-}" in
  packages) packages ;;
  start) start ;;
  load) shift; load "$@" ;;
  stop) stop ;;
  status) status ;;
  health) health ;;
  *) echo "usage: $0 packages|start|load BIN_DIR|stop|status|health" >&2; exit 2 ;;
esac
