#!/usr/bin/env bash
# Installs what the tests and `make demo` need, idempotently:
#   - etcd (Debian's etcd-server) and, for later tests, skopeo
#   - kube-apiserver built from k8s.io/kubernetes (hack/kube-apiserver), cached
#     per version and go.sum so a second run takes seconds
# and lays them out as envtest's KUBEBUILDER_ASSETS directory.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
KUBE_VERSION="$(sed -n 's/^require k8s.io\/kubernetes \(v[0-9.]*\)$/\1/p' "$ROOT/hack/kube-apiserver/go.mod")"
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/regcred"
ASSETS="${KUBEBUILDER_ASSETS:-$CACHE/envtest/$KUBE_VERSION}"
APT_PACKAGES=(etcd-server skopeo)

log() { printf '==> %s\n' "$*" >&2; }

install_packages() {
	local missing=()
	command -v etcd >/dev/null 2>&1 || missing+=(etcd-server)
	command -v skopeo >/dev/null 2>&1 || missing+=(skopeo)
	if [ "${#missing[@]}" -eq 0 ]; then
		return
	fi
	if ! command -v apt-get >/dev/null 2>&1; then
		log "missing ${missing[*]} and no apt-get: install ${APT_PACKAGES[*]} by hand"
		exit 1
	fi
	local sudo=""
	[ "$(id -u)" -eq 0 ] || sudo="sudo"
	log "apt-get install ${missing[*]}"
	$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
	# The package starts an etcd service where systemd runs; tests start their own.
	if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet etcd 2>/dev/null; then
		$sudo systemctl disable --now etcd >/dev/null 2>&1 || true
	fi
}

build_kube_apiserver() {
	local sum stamp
	sum="$(cat "$ROOT/hack/kube-apiserver/go.mod" "$ROOT/hack/kube-apiserver/go.sum" | sha256sum | cut -d' ' -f1)"
	stamp="$ASSETS/.kube-apiserver.sum"
	if [ -x "$ASSETS/kube-apiserver" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$sum" ]; then
		log "kube-apiserver $KUBE_VERSION cached in $ASSETS"
		return
	fi
	log "building kube-apiserver $KUBE_VERSION (about 5-8 minutes on 2 cores, once)"
	local start=$SECONDS
	(cd "$ROOT/hack/kube-apiserver" && go build -trimpath -o "$ASSETS/kube-apiserver.tmp" k8s.io/kubernetes/cmd/kube-apiserver)
	mv "$ASSETS/kube-apiserver.tmp" "$ASSETS/kube-apiserver"
	echo "$sum" >"$stamp"
	log "built kube-apiserver in $((SECONDS - start))s"
}

link_tool() {
	local name="$1" path
	path="$(command -v "$name" || true)"
	if [ -z "$path" ]; then
		log "$name not found"
		return 1
	fi
	ln -sfn "$path" "$ASSETS/$name"
}

main() {
	mkdir -p "$ASSETS"
	install_packages
	link_tool etcd
	link_tool kubectl || log "kubectl is optional for tests; make demo prints kubectl commands"
	build_kube_apiserver
	(cd "$ROOT" && go mod download)
	log "test assets ready: KUBEBUILDER_ASSETS=$ASSETS"
}

main "$@"
