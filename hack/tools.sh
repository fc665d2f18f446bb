#!/usr/bin/env bash
# Installs what the tests and `make demo` need, idempotently:
#   - etcd (Debian's etcd-server) and skopeo
#   - kube-apiserver built from k8s.io/kubernetes (hack/kube-apiserver), and
#     Helm 3 and Helm 4 clients (hack/helm3, hack/helm4), cached per go.sum so
#     a second run takes seconds
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

# build_pinned NAME MODULE_DIR PACKAGE: go build PACKAGE in the pinned module
# hack/MODULE_DIR into $ASSETS/NAME, unless the binary there was built from
# the same go.mod and go.sum.
build_pinned() {
	local name="$1" dir="$ROOT/hack/$2" pkg="$3" sum stamp
	sum="$(cat "$dir/go.mod" "$dir/go.sum" | sha256sum | cut -d' ' -f1)"
	stamp="$ASSETS/.$name.sum"
	if [ -x "$ASSETS/$name" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$sum" ]; then
		log "$name cached in $ASSETS"
		return
	fi
	log "building $name from $pkg (once; kube-apiserver takes 5-8 minutes on 2 cores)"
	local start=$SECONDS
	(cd "$dir" && go build -trimpath -o "$ASSETS/$name.tmp" "$pkg")
	mv "$ASSETS/$name.tmp" "$ASSETS/$name"
	echo "$sum" >"$stamp"
	log "built $name in $((SECONDS - start))s"
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
	local helm=1
	for arg in "$@"; do
		case "$arg" in
		--no-helm) helm=0 ;;
		*)
			log "unknown argument $arg (use --no-helm)"
			exit 2
			;;
		esac
	done
	mkdir -p "$ASSETS"
	install_packages
	link_tool etcd
	link_tool kubectl || log "kubectl is optional for tests; make demo prints kubectl commands"
	build_pinned kube-apiserver kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver
	if [ "$helm" = 1 ]; then
		build_pinned helm3 helm3 helm.sh/helm/v3/cmd/helm
		build_pinned helm4 helm4 helm.sh/helm/v4/cmd/helm
	fi
	(cd "$ROOT" && go mod download)
	log "test assets ready: KUBEBUILDER_ASSETS=$ASSETS"
}

main "$@"
