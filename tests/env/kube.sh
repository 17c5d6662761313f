#!/usr/bin/env bash
# A real Kubernetes control plane for tests: etcd and kube-apiserver built from
# the Go module proxy (no Docker, no release tarballs), started on free ports of
# 127.0.0.1 with self-signed serving certificates, RBAC, and an admin token.
# No kubelet, scheduler or controller-manager: objects are stored and validated,
# Deployments never get Pods.
#
#   tests/env/kube.sh build    build etcd, kube-apiserver and kubectl into the cache
#   tests/env/kube.sh start    start both; writes $PIXELPIPE_RUN/kube.env (KUBECONFIG,
#                              and PATH with a kubectl of the same version first)
#   tests/env/kube.sh stop     stop both and delete their data
#   tests/env/kube.sh status   print KUBECONFIG if it runs
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
ETCD="$BIN/etcd-$ETCD_VERSION"
DIR="$PIXELPIPE_RUN/kube"

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
  build_one "$here/kube-apiserver" "$KUBECTL" "kubectl $KUBE_VERSION" ./kubectl
}

start() {
  build
  if [ -f "$DIR/apiserver.pid" ] && kill -0 "$(cat "$DIR/apiserver.pid")" 2>/dev/null; then
    log "control plane already runs"
    return 0
  fi
  rm -rf "$DIR"
  mkdir -p "$DIR/etcd" "$DIR/certs"
  local etcd_port peer_port api_port token
  etcd_port=$(free_port)
  peer_port=$(free_port)
  api_port=$(free_port)
  token=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')

  log "starting etcd $ETCD_VERSION on 127.0.0.1:$etcd_port"
  nohup setsid "$ETCD" --data-dir "$DIR/etcd" \
    --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
    --initial-cluster "default=http://127.0.0.1:$peer_port" --unsafe-no-fsync \
    >"$DIR/etcd.log" 2>&1 </dev/null &
  echo $! >"$DIR/etcd.pid"
  wait_for 30 etcd curl -sf "http://127.0.0.1:$etcd_port/health" ||
    { tail -n 20 "$DIR/etcd.log" >&2; die "etcd did not start"; }

  # Service-account token signing keys, and a static admin token.
  openssl genrsa -out "$DIR/sa.key" 2048 2>/dev/null
  openssl rsa -in "$DIR/sa.key" -pubout -out "$DIR/sa.pub" 2>/dev/null
  printf '%s,admin,admin-uid,"system:masters"\n' "$token" >"$DIR/tokens.csv"

  log "starting kube-apiserver $KUBE_VERSION on 127.0.0.1:$api_port"
  nohup setsid "$APISERVER" \
    --etcd-servers "http://127.0.0.1:$etcd_port" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$api_port" \
    --cert-dir "$DIR/certs" \
    --token-auth-file "$DIR/tokens.csv" \
    --authorization-mode RBAC \
    --service-cluster-ip-range 10.0.0.0/24 \
    --service-account-issuer https://kubernetes.default.svc \
    --service-account-key-file "$DIR/sa.pub" \
    --service-account-signing-key-file "$DIR/sa.key" \
    --allow-privileged=true \
    --enable-priority-and-fairness=false \
    >"$DIR/apiserver.log" 2>&1 </dev/null &
  echo $! >"$DIR/apiserver.pid"

  cat >"$DIR/kubeconfig" <<KUBECONFIG
apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: https://127.0.0.1:$api_port
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
  if ! wait_for 90 kube-apiserver ready "$api_port" "$token"; then
    tail -n 40 "$DIR/apiserver.log" >&2
    die "kube-apiserver did not become ready within 90 s (logs in $DIR)"
  fi
  printf 'export KUBECONFIG=%s\nexport PATH=%s:"$PATH"\n' "$DIR/kubeconfig" "$(dirname "$KUBECTL")" >"$PIXELPIPE_RUN/kube.env"
  log "control plane is up: KUBECONFIG=$DIR/kubeconfig (source $PIXELPIPE_RUN/kube.env)"
}

ready() {
  kill -0 "$(cat "$DIR/apiserver.pid")" || return 1
  [ "$(curl -sk -H "Authorization: Bearer $2" "https://127.0.0.1:$1/readyz")" = ok ]
}

stop() {
  [ -d "$DIR" ] && log "stopping the control plane"
  stop_pid "$DIR/apiserver.pid"
  stop_pid "$DIR/etcd.pid"
  rm -rf "$DIR" "$PIXELPIPE_RUN/kube.env"
}

status() {
  [ -f "$PIXELPIPE_RUN/kube.env" ] && kill -0 "$(cat "$DIR/apiserver.pid" 2>/dev/null)" 2>/dev/null ||
    { echo "the control plane is not running" >&2; return 1; }
  sed -n 's/^export //p' "$PIXELPIPE_RUN/kube.env"
}

case "${1:-}" in
  build) build ;;
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 build|start|stop|status" >&2; exit 2 ;;
esac
