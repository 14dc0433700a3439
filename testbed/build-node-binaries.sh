#!/usr/bin/env bash
# build-node-binaries.sh - build what a real test-bed node runs besides the kubelet and
# kube-proxy (those come from testbed/build-binaries.sh): containerd v2 with ctr and its runc
# shim, and CoreDNS, from the Go module proxy into a version-keyed cache dir.
#
# Usage:  testbed/build-node-binaries.sh
#   The last line on stdout is the bin directory; everything else goes to stderr.
#
# Environment:
#   CONTAINERD_VERSION  containerd release (default below), e.g. v2.4.2
#   COREDNS_VERSION     CoreDNS release (default below), e.g. v1.15.0
#   REDKUBE_BIN_CACHE   cache root (default: $HOME/.cache/redkube/bin)
#   GO                  optional path to the go binary
#
# runc, the CNI plugins, iptables and conntrack come from Debian's packages (.ci/run installs
# them). Exit codes: 0 ok, 1 build/verification failure, 2 no Go toolchain / bad usage.
set -euo pipefail

CONTAINERD_VERSION="${CONTAINERD_VERSION:-v2.4.2}"
COREDNS_VERSION="${COREDNS_VERSION:-v1.15.0}"

prog="build-node-binaries.sh"
# shellcheck source=../scripts/gocache.sh
source "$(dirname "$0")/../scripts/gocache.sh"

BINS=(containerd ctr containerd-shim-runc-v2 coredns)
CACHE_ROOT="${REDKUBE_BIN_CACHE:-$HOME/.cache/redkube/bin}"
NAME="node-containerd-${CONTAINERD_VERSION}-coredns-${COREDNS_VERSION}"
FINAL="$CACHE_ROOT/$NAME"
RESULT="$FINAL"

cache_complete() {
    local b
    for b in "${BINS[@]}"; do [[ -x "$FINAL/$b" ]] || return 1; done
}
gocache_start

log "building into $FINAL (go: $("$GO" env GOVERSION), GOFLAGS=$GOFLAGS, nice 19)"
CONTAINERD=github.com/containerd/containerd/v2
# Static, without the snapshotters and docs nobody here needs (containerd's own release tags).
tags="urfave_cli_no_docs no_btrfs no_devmapper osusergo netgo static_build"
cflags="-s -w -X $CONTAINERD/version.Version=$CONTAINERD_VERSION"
cflags+=" -X $CONTAINERD/version.Revision=modproxy -X $CONTAINERD/version.Package=$CONTAINERD"
install() { # name tags ldflags package@version
    local t0=$SECONDS
    log "building $1 ..."
    (cd "$TMP" && GOBIN="$BIN" gocmd install -trimpath -tags "$2" -ldflags "$3" "$4") \
        || die 1 "building $1 failed"
    log "built $1 in $((SECONDS - t0))s"
}
install containerd "$tags" "$cflags" "$CONTAINERD/cmd/containerd@$CONTAINERD_VERSION"
install ctr "$tags" "$cflags" "$CONTAINERD/cmd/ctr@$CONTAINERD_VERSION"
install containerd-shim-runc-v2 "$tags no_grpc" "$cflags" \
    "$CONTAINERD/cmd/containerd-shim-runc-v2@$CONTAINERD_VERSION"
install coredns "" "-s -w" "github.com/coredns/coredns@$COREDNS_VERSION"

check_version() { # name expected-substring cmd...
    local name="$1" want="$2" out; shift 2
    out="$("$@" 2>&1)" || die 1 "$name failed to run: $out"
    grep -qF -- "$want" <<<"$out" || die 1 "$name reports '$out', expected '$want'"
}
check_version containerd "$CONTAINERD_VERSION" "$BIN/containerd" --version
check_version ctr "$CONTAINERD_VERSION" "$BIN/ctr" --version
check_version coredns "CoreDNS-${COREDNS_VERSION#v}" "$BIN/coredns" -version

cat >"$BIN/VERSIONS" <<EOF
containerd $CONTAINERD_VERSION
coredns $COREDNS_VERSION
go $("$GO" env GOVERSION)
EOF
gocache_publish
