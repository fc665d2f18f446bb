#!/usr/bin/env bash
# Installs what the tests and `make demo` need, idempotently:
#   - etcd (Debian's etcd-server) and skopeo; for the real cluster,
#     runc, the CNI plugins, conntrack and iptables;
#     promtool and prometheus, unpacked from Debian's package
#   - kube-apiserver, kubectl and the real cluster's kubelet,
#     kube-controller-manager, kube-scheduler and kube-proxy, built from
#     k8s.io/kubernetes (hack/kubernetes), and Helm 3 and Helm 4 clients
#     (hack/helm3, hack/helm4), and containerd 2 with its runc shim and
#     ctr (hack/containerd: Debian's containerd 1.6 cannot mount image
#     volumes), and cert-manager's controller and CA injector
#     (hack/cert-manager) with its CRDs, cached per go.sum so a second run
#     takes seconds
# and lays them out as envtest's KUBEBUILDER_ASSETS directory.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
KUBE_VERSION="$(sed -n 's/^require k8s.io\/kubernetes \(v[0-9.]*\)$/\1/p' "$ROOT/hack/kubernetes/go.mod")"
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/regcred"
ASSETS="${KUBEBUILDER_ASSETS:-$CACHE/envtest/$KUBE_VERSION}"
# command or file -> Debian package
declare -A APT_PACKAGES=(
	[etcd]=etcd-server [skopeo]=skopeo
	[runc]=runc [conntrack]=conntrack [iptables]=iptables
	[/usr/lib/cni/bridge]=containernetworking-plugins
	# regcred's image carries Debian's CA bundle (make image, make release)
	[/etc/ssl/certs/ca-certificates.crt]=ca-certificates
)
# Without them the binaries report v0.0.0-master, which kubectl cannot parse.
KUBE_MAJOR="$(echo "${KUBE_VERSION#v}" | cut -d. -f1)"
KUBE_MINOR="$(echo "$KUBE_VERSION" | cut -d. -f2)"
CONTAINERD_VERSION="$(cd "$ROOT/hack/containerd" && go list -m -f '{{.Version}}' github.com/containerd/containerd/v2)"
CONTAINERD_LDFLAGS="-X github.com/containerd/containerd/v2/version.Version=$CONTAINERD_VERSION"
KUBE_LDFLAGS="-X k8s.io/component-base/version.gitVersion=$KUBE_VERSION -X k8s.io/component-base/version.gitMajor=$KUBE_MAJOR -X k8s.io/component-base/version.gitMinor=$KUBE_MINOR"

log() { printf '==> %s\n' "$*" >&2; }

install_packages() {
	local missing=() cmd
	for cmd in "${!APT_PACKAGES[@]}"; do
		command -v "$cmd" >/dev/null 2>&1 || [ -e "$cmd" ] || missing+=("${APT_PACKAGES[$cmd]}")
	done
	if [ "${#missing[@]}" -eq 0 ]; then
		return
	fi
	if ! command -v apt-get >/dev/null 2>&1; then
		log "missing ${missing[*]} and no apt-get: install them by hand"
		exit 1
	fi
	local sudo=""
	[ "$(id -u)" -eq 0 ] || sudo="sudo"
	log "apt-get install ${missing[*]}"
	$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
	# The packages start an etcd service where systemd runs; tests start
	# their own.
	local svc
	for svc in etcd; do
		if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$svc" 2>/dev/null; then
			$sudo systemctl disable --now "$svc" >/dev/null 2>&1 || true
		fi
	done
}

# build_pinned NAME MODULE_DIR PACKAGE [LDFLAGS [TAGS]]: go build PACKAGE
# in the pinned module hack/MODULE_DIR into $ASSETS/NAME, unless the binary
# there was built from the same go.mod, go.sum, flags and CGO_ENABLED (and,
# for a PACKAGE of the module's own, ./DIR, the same sources).
build_pinned() {
	local name="$1" dir="$ROOT/hack/$2" pkg="$3" ldflags="${4:-}" tags="${5:-}" sum stamp own=""
	case "$pkg" in ./*) own="$(cat "$dir/$pkg"/*.go)" ;; esac
	sum="$( (cat "$dir/go.mod" "$dir/go.sum"; echo "$ldflags|$tags|${CGO_ENABLED:-}"; [ -z "$own" ] || echo "$own") | sha256sum | cut -d' ' -f1)"
	stamp="$ASSETS/.$name.sum"
	if [ -x "$ASSETS/$name" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$sum" ]; then
		log "$name cached in $ASSETS"
		return
	fi
	log "building $name from $pkg (once; kube-apiserver and kubelet take 5-8 minutes each on 2 cores)"
	local start=$SECONDS
	(cd "$dir" && go build -trimpath -tags "$tags" -ldflags "$ldflags" -o "$ASSETS/$name.tmp" "$pkg")
	mv "$ASSETS/$name.tmp" "$ASSETS/$name"
	echo "$sum" >"$stamp"
	log "built $name in $((SECONDS - start))s"
}

link_tool() {
	local name="$1" path="" dir
	# The assets directory is often on PATH itself (the README's test
	# commands put it there): look past it, or the link would point at
	# itself.
	local IFS=:
	for dir in $PATH; do
		[ -n "$dir" ] && [ "$(readlink -f "$dir")" != "$(readlink -f "$ASSETS")" ] || continue
		if [ -x "$dir/$name" ] && [ ! -d "$dir/$name" ]; then
			path="$(readlink -f "$dir/$name")"
			break
		fi
	done
	if [ -z "$path" ]; then
		log "$name not found"
		return 1
	fi
	ln -sfn "$path" "$ASSETS/$name"
}

# extract_package PACKAGE FILE...: Debian's PACKAGE unpacked, not
# installed, and FILEs (paths inside it) copied to $ASSETS: Prometheus
# (its promtool, for the alerts' unit tests, and the server the
# end-to-end tests scrape the manager with) without the service the
# package would start nor its web UI's dependencies. Cached per package
# version.
extract_package() {
	local pkg="$1"
	shift
	local version="" stamp="$ASSETS/.$pkg.version" tmp f cached=1 sudo=""
	[ "$(id -u)" -eq 0 ] || sudo="sudo"
	if ! command -v apt-get >/dev/null 2>&1 || ! command -v dpkg-deb >/dev/null 2>&1; then
		log "need apt-get and dpkg-deb to unpack $pkg: install $* by hand into $ASSETS"
		exit 1
	fi
	candidate() { apt-cache policy "$pkg" 2>/dev/null | sed -n 's/^ *Candidate: //p'; }
	version="$(candidate)"
	for f in "$@"; do
		[ -x "$ASSETS/$(basename "$f")" ] || cached=0
	done
	if [ "$cached" = 1 ] && [ -n "$version" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$version" ]; then
		log "$pkg $version cached in $ASSETS"
		return
	fi
	tmp="$(mktemp -d)"
	# A stale or missing package list: update once and try again.
	if [ -z "$version" ] || [ "$version" = "(none)" ] || ! (cd "$tmp" && apt-get download -qq "$pkg=$version" >/dev/null 2>&1); then
		$sudo apt-get update -qq
		version="$(candidate)"
		if [ -z "$version" ] || [ "$version" = "(none)" ]; then
			rm -rf "$tmp"
			log "Debian has no $pkg package here"
			exit 1
		fi
		if ! (cd "$tmp" && apt-get download -qq "$pkg=$version"); then
			rm -rf "$tmp"
			log "apt-get download $pkg=$version failed"
			exit 1
		fi
	fi
	dpkg-deb -x "$tmp"/*.deb "$tmp/root"
	for f in "$@"; do
		install -m 0755 "$tmp/root/$f" "$ASSETS/$(basename "$f")"
	done
	rm -rf "$tmp"
	echo "$version" >"$stamp"
	log "unpacked $pkg $version into $ASSETS"
}

main() {
	local helm=1
	for arg in "$@"; do
		case "$arg" in
		--no-helm) helm=0 ;;
		--assets-dir)
			echo "$ASSETS"
			exit 0
			;;
		*)
			log "unknown argument $arg (use --no-helm, or --assets-dir to print where the tools go)"
			exit 2
			;;
		esac
	done
	mkdir -p "$ASSETS"
	install_packages
	link_tool etcd
	local cmd
	for cmd in kube-apiserver kubectl kube-controller-manager kube-scheduler kubelet kube-proxy; do
		build_pinned "$cmd" kubernetes "k8s.io/kubernetes/cmd/$cmd" "$KUBE_LDFLAGS"
	done
	if [ "$helm" = 1 ]; then
		build_pinned helm3 helm3 helm.sh/helm/v3/cmd/helm
		build_pinned helm4 helm4 helm.sh/helm/v4/cmd/helm
	fi
	# containerd's own release build tags: no btrfs (cgo and its headers),
	# and a static shim without gRPC, as containerd's Makefile builds it.
	build_pinned containerd containerd github.com/containerd/containerd/v2/cmd/containerd "$CONTAINERD_LDFLAGS" "no_btrfs urfave_cli_no_docs"
	build_pinned ctr containerd github.com/containerd/containerd/v2/cmd/ctr "$CONTAINERD_LDFLAGS" "no_btrfs urfave_cli_no_docs"
	CGO_ENABLED=0 build_pinned containerd-shim-runc-v2 containerd github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2 "$CONTAINERD_LDFLAGS" "no_grpc urfave_cli_no_docs"
	# cert-manager's controller and CA injector (mains of our own over its
	# library: its binaries' modules are not served), and its CRDs.
	build_pinned cert-manager-controller cert-manager ./controller
	build_pinned cert-manager-cainjector cert-manager ./cainjector
	local cm
	cm="$(cd "$ROOT/hack/cert-manager" && go list -m -f '{{.Dir}}' github.com/cert-manager/cert-manager)"
	rm -rf "$ASSETS/cert-manager-crds"
	mkdir -p "$ASSETS/cert-manager-crds"
	cp "$cm"/deploy/crds/*.yaml "$ASSETS/cert-manager-crds/"
	chmod -R u+w "$ASSETS/cert-manager-crds"
	extract_package prometheus usr/bin/promtool usr/bin/prometheus
	(cd "$ROOT" && go mod download)
	log "test assets ready: KUBEBUILDER_ASSETS=$ASSETS"
}

main "$@"
