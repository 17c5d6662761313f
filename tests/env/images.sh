#!/usr/bin/env bash
# The container images a real kubelet runs, built without a registry or a
# Docker daemon. worker/Dockerfile and operator/Dockerfile describe the images
# for a registry: each copies one release binary onto
# gcr.io/distroless/cc-debian12:nonroot, runs as 65532:65532 and exposes one
# port. Here there is no registry to pull that base from or push to, so this
# writes OCI image archives with the same content, user, port and entrypoint
# from the release binaries already built on this machine (tests/env/oci-image.py:
# the binary, the shared libraries `ldd` finds for it on this Debian 12 host,
# and the few files of distroless it uses), plus the pod sandbox ("pause")
# image, built from tests/env/pause/pause.c. `ctr images import` loads them
# into containerd's k8s.io namespace, where the kubelet's CRI finds them; the
# pods must then not pull (imagePullPolicy IfNotPresent or Never) and
# containerd's CRI must have sandbox_image = "pixelpipe.local/pause:1".
# The archives are reproducible: the same binaries give the same bytes.
#
#   tests/env/images.sh build BIN_DIR OUT_DIR
#       BIN_DIR holds pixelpipe-worker and pixelpipe-operator, e.g. after
#         CARGO_TARGET_DIR=$PIXELPIPE_CACHE/target cargo build --release --locked \
#           -p pixelpipe-worker -p pixelpipe-operator --bins
#       it is $PIXELPIPE_CACHE/target/release. Writes OUT_DIR/pixelpipe-worker.tar,
#       OUT_DIR/pixelpipe-operator.tar and OUT_DIR/pause.tar (and OUT_DIR/pause,
#       rebuilt only when pause.c is newer).
#   tests/env/images.sh import OUT_DIR ADDRESS
#       imports the three archives into the containerd listening on the socket
#       ADDRESS (namespace k8s.io) and unpacks them for the overlayfs
#       snapshotter (or $CONTAINERD_SNAPSHOTTER).
#   tests/env/images.sh names
#       prints the three image names, one a line.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=common.sh
. "$here/common.sh"
repo=$(cd "$here/../.." && pwd)

PAUSE_IMAGE=pixelpipe.local/pause:1
ARCHIVES=(pixelpipe-worker.tar pixelpipe-operator.tar pause.tar)

# The version cargo builds the package with (both inherit the workspace's).
crate_version() {
  (cd "$repo" && cargo metadata --no-deps --format-version 1 --offline) |
    python3 -c 'import json, sys
pkgs = [p for p in json.load(sys.stdin)["packages"] if p["name"] == sys.argv[1]]
print(pkgs[0]["version"] if pkgs else "")' "$1"
}

image_names() {
  local v
  for crate in pixelpipe-worker pixelpipe-operator; do
    v=$(crate_version "$crate")
    [ -n "$v" ] || die "no package $crate in the workspace"
    echo "ghcr.io/pixelpipe/$crate:$v"
  done
  echo "$PAUSE_IMAGE"
}

# The manifests name the images the kubelet will look for: say so when a
# version bump left them behind (the pods would never start).
check_manifests() {
  local worker=$1 operator=$2
  grep -q "image: $operator\$" "$repo/manifests/operator/deployment.yaml" ||
    log "warning: manifests/operator/deployment.yaml does not use $operator"
  grep -q "image: $worker\$" "$repo/manifests/samples/storefront.yaml" ||
    log "warning: manifests/samples/storefront.yaml does not use $worker"
}

build_pause() {
  local out=$1 src=$here/pause/pause.c
  if [ -x "$out/pause" ] && [ "$out/pause" -nt "$src" ]; then return 0; fi
  command -v cc >/dev/null || die "a C compiler (cc) is needed for $src"
  log "compiling $src"
  cc -Os -static -o "$out/pause.tmp.$$" "$src" || die "compiling $src failed (static glibc: libc6-dev)"
  strip "$out/pause.tmp.$$"
  mv "$out/pause.tmp.$$" "$out/pause"
}

build() {
  local bin=$1 out=$2 names worker operator b t0
  mapfile -t names < <(image_names)
  worker=${names[0]} operator=${names[1]}
  check_manifests "$worker" "$operator"
  for b in pixelpipe-worker pixelpipe-operator; do
    [ -x "$bin/$b" ] || die "no $bin/$b: build the release binaries first (see $0)"
  done
  mkdir -p "$out"
  build_pause "$out"
  t0=$SECONDS
  # As in the Dockerfiles: the binary in /usr/local/bin on distroless'
  # cc-debian12:nonroot (whose working directory is /home/nonroot).
  "$here/oci-image.py" --name "$worker" --out "$out/pixelpipe-worker.tar" \
    --distroless-base --user 65532:65532 --workdir /home/nonroot --expose 9090 \
    --entrypoint /usr/local/bin/pixelpipe-worker \
    --file "$bin/pixelpipe-worker:/usr/local/bin/pixelpipe-worker" \
    --libs-of /usr/local/bin/pixelpipe-worker
  "$here/oci-image.py" --name "$operator" --out "$out/pixelpipe-operator.tar" \
    --distroless-base --user 65532:65532 --workdir /home/nonroot --expose 8080 \
    --entrypoint /usr/local/bin/pixelpipe-operator \
    --file "$bin/pixelpipe-operator:/usr/local/bin/pixelpipe-operator" \
    --libs-of /usr/local/bin/pixelpipe-operator
  # As registry.k8s.io/pause: one static binary, user 65535, nothing else.
  "$here/oci-image.py" --name "$PAUSE_IMAGE" --out "$out/pause.tar" \
    --user 65535:65535 --entrypoint /pause --file "$out/pause:/pause"
  log "wrote ${ARCHIVES[*]} to $out in $((SECONDS - t0)) s"
}

import() {
  local out=$1 address=$2 a
  command -v ctr >/dev/null || die "ctr (containerd's CLI) is needed"
  for a in "${ARCHIVES[@]}"; do
    [ -f "$out/$a" ] || die "no $out/$a: run $0 build first"
  done
  for a in "${ARCHIVES[@]}"; do
    log "importing $out/$a"
    # Unpacking is the default; the CRI uses the snapshotter named here.
    ctr --address "$address" -n k8s.io images import \
      --snapshotter "${CONTAINERD_SNAPSHOTTER:-overlayfs}" --platform linux/amd64 \
      "$out/$a" >&2 || die "importing $out/$a into $address failed"
  done
}

case "${1:-}" in
  build)
    [ $# -eq 3 ] || die "usage: $0 build BIN_DIR OUT_DIR"
    build "$2" "$3"
    ;;
  import)
    [ $# -eq 3 ] || die "usage: $0 import OUT_DIR ADDRESS"
    import "$2" "$3"
    ;;
  names) image_names ;;
  *)
    echo "usage: $0 build BIN_DIR OUT_DIR | import OUT_DIR ADDRESS | names" >&2
    exit 2
    ;;
esac
