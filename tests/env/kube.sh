#!/usr/bin/env bash
# A real Kubernetes control plane for tests: etcd, kube-apiserver and
# kube-controller-manager built from the Go module proxy (no Docker, no release
# tarballs), started on free ports of 127.0.0.1 with self-signed serving
# certificates, RBAC, and an admin token. The controller manager runs only the
# garbage collector: deleting an owner deletes its dependents (ownerReferences),
# as in a real cluster. No kubelet, scheduler or other controllers: objects are
# stored and validated, Deployments never get ReplicaSets or Pods.
#
#   tests/env/kube.sh build     build etcd, kube-apiserver, kube-controller-manager,
#                               kubectl and the node's kubelet, kube-scheduler and
#                               kube-proxy into the cache
#   tests/env/kube.sh start     start them; writes $PIXELPIPE_RUN/kube.env (KUBECONFIG,
#                               and PATH with a kubectl of the same version first)
#   tests/env/kube.sh stop      stop them and delete their data
#   tests/env/kube.sh status    print KUBECONFIG if it runs
#   tests/env/kube.sh halt-apiserver    stop only kube-apiserver (fault injection;
#                               etcd, the controller manager and the data stay)
#   tests/env/kube.sh resume-apiserver  start it again, same flags and port, and
#                               restart the controller manager
#
# tests/env/node.sh runs a second control plane through this script for its real
# node (PIXELPIPE_KUBE_NODE=1): in $PIXELPIPE_RUN/node-kube, serving on the node's
# bridge address so pods reach it, with every default controller.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=common.sh
. "$here/common.sh"

# The versions are whatever the two Go modules require.
module_version() { awk -v m="$2" '$1 == m || ($1 == "require" && $2 == m) {print $NF; exit}' "$1"; }
KUBE_VERSION=$(module_version "$here/kube-apiserver/go.mod" k8s.io/kubernetes)
ETCD_VERSION=$(module_version "$here/etcd/go.mod" go.etcd.io/etcd/server/v3)
BIN="$PIXELPIPE_CACHE/bin"
APISERVER="$BIN/kube-apiserver-$KUBE_VERSION"
# kubectl goes in a folder of its own so kube.env can put it first on PATH.
KUBECTL="$BIN/kubectl-$KUBE_VERSION/kubectl"
CONTROLLER_MANAGER="$BIN/kube-controller-manager-$KUBE_VERSION"
ETCD="$BIN/etcd-$ETCD_VERSION"
KUBELET="$BIN/kubelet-$KUBE_VERSION"
SCHEDULER="$BIN/kube-scheduler-$KUBE_VERSION"
KUBE_PROXY="$BIN/kube-proxy-$KUBE_VERSION"
NAME=kube ADDRESS=127.0.0.1 NODE=${PIXELPIPE_KUBE_NODE:-}
if [ -n "$NODE" ]; then NAME=node-kube ADDRESS=$PIXELPIPE_NODE_IP; fi
DIR="$PIXELPIPE_RUN/$NAME"
ENV_FILE="$DIR.env"

# Release builds stamp their version at link time; without it the server says
# v0.0.0 and clients cannot parse it.
version_flags() {
  local minor=${KUBE_VERSION#v1.}
  minor=${minor%%.*}
  local p f=""
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    f+=" -X $p.gitVersion=$KUBE_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
  done
  echo "$f"
}

build_one() {
  local src=$1 out=$2 what=$3
  [ -x "$out" ] && return 0
  command -v go >/dev/null || die "Go is needed to build $what"
  mkdir -p "$BIN"
  log "building $what from the Go module proxy (first time only; several minutes)"
  mkdir -p "$(dirname "$out")"
  (cd "$src" && GOFLAGS=-mod=mod go build -trimpath -ldflags="-s -w $(version_flags)" -o "$out.tmp.$$" "${4:-.}") ||
    die "building $what failed"
  mv "$out.tmp.$$" "$out"
}

build() {
  build_one "$here/etcd" "$ETCD" "etcd $ETCD_VERSION"
  build_one "$here/kube-apiserver" "$APISERVER" "kube-apiserver $KUBE_VERSION"
  build_one "$here/kube-apiserver" "$CONTROLLER_MANAGER" "kube-controller-manager $KUBE_VERSION" ./kube-controller-manager
  build_one "$here/kube-apiserver" "$KUBECTL" "kubectl $KUBE_VERSION" ./kubectl
  build_one "$here/kube-apiserver" "$KUBELET" "kubelet $KUBE_VERSION" ./kubelet
  build_one "$here/kube-apiserver" "$SCHEDULER" "kube-scheduler $KUBE_VERSION" ./kube-scheduler
  build_one "$here/kube-apiserver" "$KUBE_PROXY" "kube-proxy $KUBE_VERSION" ./kube-proxy
}

# Where node.sh finds the binaries.
paths() {
  printf 'KUBECTL=%s\nKUBELET=%s\nSCHEDULER=%s\nKUBE_PROXY=%s\n' "$KUBECTL" "$KUBELET" "$SCHEDULER" "$KUBE_PROXY"
}

running() { [ -f "$DIR/$1.pid" ] && kill -0 "$(cat "$DIR/$1.pid")" 2>/dev/null; }

admin_token() { cut -d, -f1 "$DIR/tokens.csv"; }

kc() { "$KUBECTL" --kubeconfig "$DIR/kubeconfig" "$@"; }

# The one way kube-apiserver is started, by start and by resume-apiserver: the
# ports come from $DIR/ports.env, everything else (certificates, keys, tokens,
# data in etcd) is already in $DIR.
start_apiserver() {
  # shellcheck source=/dev/null
  . "$DIR/ports.env"
  # With a node: logs and exec reach the kubelet at the node's address (its
  # host name resolves nowhere), with a client certificate the kubelet trusts.
  local node_flags=()
  if [ -n "$NODE" ]; then node_flags=(--kubelet-preferred-address-types InternalIP
    --kubelet-client-certificate "$DIR/kubelet-client.crt" --kubelet-client-key "$DIR/kubelet-client.key"); fi
  log "starting kube-apiserver $KUBE_VERSION on $ADDRESS:$API_PORT"
  nohup setsid "$APISERVER" \
    --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
    --bind-address "$ADDRESS" --advertise-address "$ADDRESS" --secure-port "$API_PORT" \
    --cert-dir "$DIR/certs" \
    --token-auth-file "$DIR/tokens.csv" \
    --authorization-mode RBAC \
    --service-cluster-ip-range 10.0.0.0/24 \
    --service-account-issuer https://kubernetes.default.svc \
    --service-account-key-file "$DIR/sa.pub" \
    --service-account-signing-key-file "$DIR/sa.key" \
    --allow-privileged=true \
    --enable-priority-and-fairness=false \
    "${node_flags[@]}" \
    >>"$DIR/apiserver.log" 2>&1 </dev/null &
  echo $! >"$DIR/apiserver.pid"
}

wait_apiserver() {
  if ! wait_for 90 kube-apiserver ready "$API_PORT" "$(admin_token)"; then
    tail -n 40 "$DIR/apiserver.log" >&2
    die "kube-apiserver did not become ready within 90 s (logs in $DIR)"
  fi
}

# Only the garbage collector, and nothing it does not need:
#   --controllers garbagecollector  the alias of garbage-collector-controller; no
#                                   service-account token controller, no
#                                   Deployment controller (Deployments still get
#                                   no Pods)
#   --leader-elect=false            one instance; no Lease in kube-system, and no
#                                   exit when the API server is away longer than
#                                   the renew deadline (halt-apiserver)
#   --secure-port 0                 no HTTPS (/healthz, /metrics) server: its
#                                   default port, 10257, would be the same for
#                                   every control plane on the machine
# It authenticates with the admin token (system:masters; without
# --use-service-account-credentials every controller uses this kubeconfig).
#
# With a node it runs every default controller instead (Deployments,
# ReplicaSets, service accounts and their tokens, the node's lifecycle), which
# need the token signing key, the CA pods trust, and a flex-volume directory of
# their own (the default is under /usr/libexec).
start_controller_manager() {
  cp "$DIR/kubeconfig" "$DIR/controller-manager.kubeconfig"
  local controllers=(--controllers garbagecollector) what="garbage collector only"
  if [ -n "$NODE" ]; then
    what="every default controller"
    controllers=(--controllers '*' --service-account-private-key-file "$DIR/sa.key"
      --root-ca-file "$DIR/certs/apiserver.crt" --flex-volume-plugin-dir "$DIR/flexvolume")
  fi
  log "starting kube-controller-manager $KUBE_VERSION ($what)"
  nohup setsid "$CONTROLLER_MANAGER" \
    --kubeconfig "$DIR/controller-manager.kubeconfig" \
    "${controllers[@]}" \
    --leader-elect=false \
    --secure-port 0 \
    >>"$DIR/controller-manager.log" 2>&1 </dev/null &
  echo $! >"$DIR/controller-manager.pid"
  local t0=$SECONDS
  if ! gc_works; then
    tail -n 40 "$DIR/controller-manager.log" >&2
    die "the garbage collector did not delete a dependent within 60 s (logs in $DIR)"
  fi
  log "the garbage collector works ($((SECONDS - t0)) s after kube-controller-manager started)"
}

# Ready means working: a dependent ConfigMap in kube-system is deleted by the
# garbage collector after its owner is.
gc_works() {
  local owner=pixelpipe-gc-probe child=pixelpipe-gc-probe-dependent uid i out
  wait_for 30 kube-system kc get namespace kube-system || return 1
  kc -n kube-system delete configmap "$owner" "$child" --ignore-not-found --wait=false >/dev/null || return 1
  uid=$(kc -n kube-system create configmap "$owner" -o jsonpath='{.metadata.uid}') || return 1
  kc -n kube-system create -f - >/dev/null <<CHILD || return 1
apiVersion: v1
kind: ConfigMap
metadata:
  name: $child
  ownerReferences:
  - {apiVersion: v1, kind: ConfigMap, name: $owner, uid: "$uid"}
CHILD
  kc -n kube-system delete configmap "$owner" --wait=false >/dev/null || return 1
  for ((i = 0; i < 120; i++)); do
    running controller-manager || return 1
    if out=$(kc -n kube-system get configmap "$child" --ignore-not-found -o name) && [ -z "$out" ]; then
      return 0
    fi
    sleep 0.5
  done
  return 1
}

# The kubelet trusts clients with a certificate from a CA made here, and the
# API server is the one client it gets (logs, exec, port-forward).
kubelet_client_certificate() {
  local d=$DIR
  openssl req -x509 -newkey rsa:2048 -nodes -days 7 -subj /CN=pixelpipe-kubelet-client-ca \
    -keyout "$d/kubelet-ca.key" -out "$d/kubelet-ca.crt" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj /CN=kube-apiserver-kubelet-client \
    -keyout "$d/kubelet-client.key" -out "$d/kubelet-client.csr" 2>/dev/null
  openssl x509 -req -days 7 -in "$d/kubelet-client.csr" -CA "$d/kubelet-ca.crt" -CAkey "$d/kubelet-ca.key" \
    -CAcreateserial -out "$d/kubelet-client.crt" 2>/dev/null
}

start() {
  build
  if running apiserver && [ -f "$ENV_FILE" ]; then
    if running controller-manager; then
      log "control plane already runs"
    else
      # Started by an older kube.sh, or the controller manager died.
      start_controller_manager
    fi
    return 0
  fi
  # Whatever is left of a failed or halted one (etcd, the controller manager).
  stop
  mkdir -p "$DIR/etcd" "$DIR/certs"
  local token
  ETCD_PORT=$(free_port)
  PEER_PORT=$(free_port)
  API_PORT=$(free_port)
  token=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
  # What start_apiserver, and so resume-apiserver, reads.
  printf 'ETCD_PORT=%s\nPEER_PORT=%s\nAPI_PORT=%s\n' "$ETCD_PORT" "$PEER_PORT" "$API_PORT" >"$DIR/ports.env"

  log "starting etcd $ETCD_VERSION on 127.0.0.1:$ETCD_PORT"
  nohup setsid "$ETCD" --data-dir "$DIR/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$PEER_PORT" \
    --initial-cluster "default=http://127.0.0.1:$PEER_PORT" --unsafe-no-fsync \
    >"$DIR/etcd.log" 2>&1 </dev/null &
  echo $! >"$DIR/etcd.pid"
  wait_for 30 etcd curl -sf "http://127.0.0.1:$ETCD_PORT/health" ||
    { tail -n 20 "$DIR/etcd.log" >&2; die "etcd did not start"; }

  # Service-account token signing keys, and a static admin token.
  openssl genrsa -out "$DIR/sa.key" 2048 2>/dev/null
  openssl rsa -in "$DIR/sa.key" -pubout -out "$DIR/sa.pub" 2>/dev/null
  printf '%s,admin,admin-uid,"system:masters"\n' "$token" >"$DIR/tokens.csv"
  if [ -n "$NODE" ]; then kubelet_client_certificate; fi

  start_apiserver

  cat >"$DIR/kubeconfig" <<KUBECONFIG
apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: https://$ADDRESS:$API_PORT
    certificate-authority: $DIR/certs/apiserver.crt
users:
- name: admin
  user:
    token: $token
contexts:
- name: local
  context: {cluster: local, user: admin, namespace: default}
current-context: local
KUBECONFIG
  wait_apiserver
  start_controller_manager
  printf 'export KUBECONFIG=%s\nexport PATH=%s:"$PATH"\n' "$DIR/kubeconfig" "$(dirname "$KUBECTL")" >"$ENV_FILE"
  log "control plane is up: KUBECONFIG=$DIR/kubeconfig (source $ENV_FILE)"
}

# Fault injection: the API server goes away at once, as if it crashed: SIGKILL,
# so its port closes and every open connection breaks now. (On SIGTERM it stops
# listening but keeps serving the watches it has open, for up to a minute.)
# etcd (and so every object), the certificates, the token and the controller
# manager stay.
halt_apiserver() {
  [ -f "$DIR/ports.env" ] || die "no control plane with a $DIR/ports.env (start it with this kube.sh)"
  running apiserver || { log "kube-apiserver is not running"; return 0; }
  log "halting kube-apiserver"
  local pid i
  pid=$(cat "$DIR/apiserver.pid")
  kill -KILL "$pid" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  rm -f "$DIR/apiserver.pid"
}

resume_apiserver() {
  [ -f "$DIR/ports.env" ] || die "no control plane with a $DIR/ports.env (start it with this kube.sh)"
  if running apiserver; then
    log "kube-apiserver already runs"
    return 0
  fi
  running etcd || die "etcd is not running; stop and start the control plane"
  # shellcheck source=/dev/null
  . "$DIR/ports.env"
  port_open "$API_PORT" "$ADDRESS" && die "$ADDRESS:$API_PORT is taken by another process"
  start_apiserver
  wait_apiserver
  log "kube-apiserver is back on $ADDRESS:$API_PORT"
  # The garbage collector's informers back off while the API server is away and
  # then saw new objects only 50 to 100 s after it was back (5 and 30 s outages);
  # a new controller manager collects garbage within a second.
  stop_pid "$DIR/controller-manager.pid"
  start_controller_manager
}

ready() {
  kill -0 "$(cat "$DIR/apiserver.pid")" || return 1
  [ "$(curl -sk -H "Authorization: Bearer $2" "https://$ADDRESS:$1/readyz")" = ok ]
}

stop() {
  [ -d "$DIR" ] && log "stopping the control plane"
  stop_pid "$DIR/controller-manager.pid"
  stop_pid "$DIR/apiserver.pid"
  stop_pid "$DIR/etcd.pid"
  rm -rf "$DIR" "$ENV_FILE"
}

status() {
  [ -f "$ENV_FILE" ] && kill -0 "$(cat "$DIR/apiserver.pid" 2>/dev/null)" 2>/dev/null ||
    { echo "the control plane is not running" >&2; return 1; }
  sed -n 's/^export //p' "$ENV_FILE"
}

case "${1:-}" in
  build) build ;;
  paths) paths ;;
  start) start ;;
  stop) stop ;;
  status) status ;;
  halt-apiserver) halt_apiserver ;;
  resume-apiserver) resume_apiserver ;;
  *) echo "usage: $0 build|paths|start|stop|status|halt-apiserver|resume-apiserver" >&2; exit 2 ;;
esac
