#!/usr/bin/env bash
# Builds the real Kubernetes control plane the tests run against — etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, kubectl and helm — from the Go module proxy, pinned by the
# go.mod/go.sum files under tools/controlplane/. The binaries land in a cache outside git, keyed by a hash
# of those pins, and are reused when present:
#
#   ${LEAFBRIDGE_CONTROL_PLANE_CACHE:-$HOME/.cache/leafbridge/control-plane}/<key>/bin/
#
# Prints the bin directory on its last line of stdout. Without Go (>= 1.26) it says why and exits 3, so the
# caller can skip the real-cluster suite out loud; every other failure exits 1.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
tools="$root/tools/controlplane"
cache="${LEAFBRIDGE_CONTROL_PLANE_CACHE:-$HOME/.cache/leafbridge/control-plane}"

if ! command -v go >/dev/null 2>&1; then
  echo "build-control-plane: no Go toolchain on PATH (Go >= 1.26 and the Go module proxy build the real control plane)" >&2
  exit 3
fi
version="$(go env GOVERSION)"
minor="$(echo "$version" | sed -E 's/^go1\.([0-9]+).*/\1/')"
if ! [[ "$minor" =~ ^[0-9]+$ ]] || ((minor < 26)); then
  echo "build-control-plane: $version is too old (the pinned modules need Go >= 1.26)" >&2
  exit 3
fi

key="$(cat "$tools"/*/go.mod "$tools"/*/go.sum | sha256sum | cut -c1-16)"
bin="$cache/$key/bin"
want=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl helm)
missing=()
for b in "${want[@]}"; do [[ -x "$bin/$b" ]] || missing+=("$b"); done
if ((${#missing[@]} == 0)); then
  echo "$bin"
  exit 0
fi

mkdir -p "$bin"
echo "build-control-plane: building ${missing[*]} into $bin (a cold build takes 30–45 minutes on 2 cores)" >&2
start=$SECONDS
export GOTOOLCHAIN=local GOFLAGS="-mod=readonly -buildvcs=false"
build() { # module-dir output package...
  local dir="$1" out="$2"
  shift 2
  (cd "$tools/$dir" && go build -trimpath -ldflags='-s -w' -o "$out" "$@")
}
rm -rf "$bin.partial" && mkdir -p "$bin.partial"
build etcd "$bin.partial/etcd" go.etcd.io/etcd/server/v3
build kubernetes "$bin.partial/" k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
  k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl
build helm "$bin.partial/helm" helm.sh/helm/v4/cmd/helm
for b in "${want[@]}"; do mv "$bin.partial/$b" "$bin/$b"; done
rm -rf "$bin.partial"
echo "build-control-plane: built in $((SECONDS - start)) s" >&2
echo "$bin"
