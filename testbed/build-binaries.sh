#!/usr/bin/env bash
# build-binaries.sh - build the Kubernetes control-plane binaries and etcd
# from the Go module proxy (no git clones) into a version-keyed cache dir.
#
# Usage:  testbed/build-binaries.sh
#   The last line on stdout is the bin directory; everything else goes to stderr.
#
# Environment:
#   KUBE_VERSION       Kubernetes release to build (default below), e.g. v1.36.3
#   ETCD_VERSION       etcd release to build (default below), e.g. v3.6.8
#   REDKUBE_BIN_CACHE  cache root (default: $HOME/.cache/redkube/bin)
#   KUBE_GIT_COMMIT    optional commit sha to stamp into the k8s binaries (default: empty)
#   ETCD_GIT_SHA       optional commit sha to stamp into etcd (default: unknown)
#   GO                 optional path to the go binary
#
# Exit codes: 0 ok, 1 build/verification failure, 2 no Go toolchain / bad usage.
set -euo pipefail

# ---- pinned versions (overridable) ------------------------------------------
# v1.36.3 is the newest Kubernetes release whose official etcd pairing is 3.6.x
# (its build/dependencies.yaml and go.mod both say etcd 3.6.8). v1.37.x pairs
# with etcd 3.7.
KUBE_VERSION="${KUBE_VERSION:-v1.36.3}"
ETCD_VERSION="${ETCD_VERSION:-v3.6.8}"
# -----------------------------------------------------------------------------

KUBE_BINS=(kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy)
ETCD_BINS=(etcd etcdctl)

prog="build-binaries.sh"
# shellcheck source=../scripts/gocache.sh
source "$(dirname "$0")/../scripts/gocache.sh"

# Normalise "1.36.3" -> "v1.36.3" and validate.
[[ "$KUBE_VERSION" == v* ]] || KUBE_VERSION="v$KUBE_VERSION"
[[ "$ETCD_VERSION" == v* ]] || ETCD_VERSION="v$ETCD_VERSION"
semver_re='^v[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$'
[[ "$KUBE_VERSION" =~ $semver_re && "$KUBE_VERSION" == v1.* ]] \
    || die 2 "KUBE_VERSION '$KUBE_VERSION' is not a v1.X.Y version"
[[ "$ETCD_VERSION" =~ $semver_re && "$ETCD_VERSION" == v3.* ]] \
    || die 2 "ETCD_VERSION '$ETCD_VERSION' is not a v3.X.Y version"

CACHE_ROOT="${REDKUBE_BIN_CACHE:-$HOME/.cache/redkube/bin}"
NAME="k8s-${KUBE_VERSION}-etcd-${ETCD_VERSION}"
FINAL="$CACHE_ROOT/$NAME"

cache_complete() {
    local b
    for b in "${KUBE_BINS[@]}" "${ETCD_BINS[@]}"; do
        [[ -f "$FINAL/$b" && -x "$FINAL/$b" ]] || return 1
    done
}

RESULT="$FINAL"
gocache_start

BUILD_DATE="$(date -u ${SOURCE_DATE_EPOCH:+--date=@$SOURCE_DATE_EPOCH} +%Y-%m-%dT%H:%M:%SZ)"

# Path of the downloaded go.mod of module@version (via the module proxy).
mod_gomod() {
    local json
    json="$(cd "$TMP" && "${NICE[@]}" "$GO" mod download -json "$1")" \
        || die 1 "cannot download $1 from the module proxy: $json"
    sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p' <<<"$json"
}

# Print the module paths that a go.mod replaces with a local directory whose
# path starts with $2 (e.g. "./staging/" or "../"), and that it also requires.
local_replaces() {
    local gomod="$1" prefix="$2" m
    awk -v pfx="$prefix" '
        /^replace[[:space:]]*\(/ { inblk = 1; next }
        inblk && /^\)/           { inblk = 0; next }
        {
            line = $0; sub(/^replace[[:space:]]+/, "", line)
            if ((inblk || $1 == "replace") && index(line, "=> " pfx) > 0) {
                n = split(line, f, /[[:space:]]+/)
                for (i = 1; i <= n; i++) if (f[i] != "") { print f[i]; break }
            }
        }' "$gomod" | sort -u | while read -r m; do
        if grep -qE "^[[:space:]]*(require[[:space:]]+)?${m//./\\.}[[:space:]]+v" "$gomod"; then
            echo "$m"
        fi
    done
}

# The go / godebug directives of a go.mod (godebug only applies in the main module).
go_directives() {
    awk '/^go[[:space:]]/ { print; next }
         /^godebug[[:space:]]*\(/ { blk = 1; print; next }
         blk { print; if ($0 ~ /^\)/) blk = 0; next }
         /^godebug[[:space:]]/ { print }' "$1"
}

build_one() { # name pkg moddir ldflags
    local name="$1" pkg="$2" dir="$3" ldflags="$4" t0=$SECONDS
    log "building $name $5 ..."
    gocmd build -C "$dir" -mod=mod -trimpath -ldflags "$ldflags" -o "$BIN/$name" "$pkg" \
        || die 1 "building $name $5 failed"
    log "built $name $5 in $((SECONDS - t0))s ($(du -h "$BIN/$name" | cut -f1))"
}

log "building into $FINAL (go: $("$GO" env GOVERSION), GOFLAGS=$GOFLAGS, nice 19)"

# ---- Kubernetes ---------------------------------------------------------------
# k8s.io/kubernetes replaces its staging modules (k8s.io/api, client-go, ...)
# with ./staging/src/... paths, so `go install ...@version` refuses it. A small
# wrapper module requires k8s.io/kubernetes and replaces each staging module
# with its published v0.Y.Z release instead.
log "resolving k8s.io/kubernetes@$KUBE_VERSION ..."
K8S_GOMOD="$(mod_gomod "k8s.io/kubernetes@$KUBE_VERSION")"
[[ -f "$K8S_GOMOD" ]] || die 1 "no go.mod for k8s.io/kubernetes@$KUBE_VERSION"
STAGING_VERSION="v0.${KUBE_VERSION#v1.}"
KDIR="$TMP/mod-k8s"
mkdir -p "$KDIR"
{
    echo "module redkube.local/k8s-build"
    echo
    go_directives "$K8S_GOMOD"
    echo
    echo "require k8s.io/kubernetes $KUBE_VERSION"
    echo
    echo "replace ("
    local_replaces "$K8S_GOMOD" "./staging/" | while read -r m; do
        printf '\t%s => %s %s\n' "$m" "$m" "$STAGING_VERSION"
    done
    echo ")"
} >"$KDIR/go.mod"
grep -q 'k8s.io/client-go =>' "$KDIR/go.mod" \
    || die 1 "could not read the staging replace list from $K8S_GOMOD"

kminor="${KUBE_VERSION#v1.}"; kminor="${kminor%%.*}"
kflags="-s -w"
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    kflags+=" -X $p.gitVersion=$KUBE_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$kminor"
    kflags+=" -X $p.gitTreeState=clean -X $p.buildDate=$BUILD_DATE"
    # The module zip carries no commit; default is the "$Format:%H$" placeholder.
    kflags+=" -X $p.gitCommit=${KUBE_GIT_COMMIT:-}"
done
for b in "${KUBE_BINS[@]}"; do
    build_one "$b" "k8s.io/kubernetes/cmd/$b" "$KDIR" "$kflags" "$KUBE_VERSION"
done

# ---- etcd ---------------------------------------------------------------------
# The etcd server main package is go.etcd.io/etcd/server/v3 (3.5 and 3.6), etcdctl
# is go.etcd.io/etcd/etcdctl/v3; both replace sibling modules with ../ paths, so
# use the same wrapper trick and pin the siblings to the same release.
log "resolving go.etcd.io/etcd/server/v3@$ETCD_VERSION ..."
ETCD_GOMOD="$(mod_gomod "go.etcd.io/etcd/server/v3@$ETCD_VERSION")"
[[ -f "$ETCD_GOMOD" ]] || die 1 "no go.mod for go.etcd.io/etcd/server/v3@$ETCD_VERSION"
EDIR="$TMP/mod-etcd"
mkdir -p "$EDIR"
{
    echo "module redkube.local/etcd-build"
    echo
    go_directives "$ETCD_GOMOD"
    echo
    echo "require ("
    printf '\tgo.etcd.io/etcd/server/v3 %s\n\tgo.etcd.io/etcd/etcdctl/v3 %s\n' "$ETCD_VERSION" "$ETCD_VERSION"
    echo ")"
    echo
    echo "replace ("
    local_replaces "$ETCD_GOMOD" "../" | while read -r m; do
        printf '\t%s => %s %s\n' "$m" "$m" "$ETCD_VERSION"
    done
    echo ")"
} >"$EDIR/go.mod"
eflags="-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA=${ETCD_GIT_SHA:-unknown}"
build_one etcd go.etcd.io/etcd/server/v3 "$EDIR" "$eflags" "$ETCD_VERSION"
build_one etcdctl go.etcd.io/etcd/etcdctl/v3 "$EDIR" "$eflags" "$ETCD_VERSION"

# ---- verify, then publish atomically -----------------------------------------
check_version() { # name expected-substring cmd...
    local name="$1" want="$2" out; shift 2
    out="$("$@" 2>&1)" || die 1 "$name failed to run: $out"
    grep -qF -- "$want" <<<"$out" || die 1 "$name reports '$out', expected '$want'"
}
check_version kube-apiserver "Kubernetes $KUBE_VERSION" "$BIN/kube-apiserver" --version
check_version kube-controller-manager "Kubernetes $KUBE_VERSION" "$BIN/kube-controller-manager" --version
check_version kube-scheduler "Kubernetes $KUBE_VERSION" "$BIN/kube-scheduler" --version
check_version kubectl "Client Version: $KUBE_VERSION" "$BIN/kubectl" version --client
check_version kubelet "Kubernetes $KUBE_VERSION" "$BIN/kubelet" --version
check_version kube-proxy "Kubernetes $KUBE_VERSION" "$BIN/kube-proxy" --version
check_version etcd "etcd Version: ${ETCD_VERSION#v}" "$BIN/etcd" --version
check_version etcdctl "etcdctl version: ${ETCD_VERSION#v}" "$BIN/etcdctl" version

cat >"$BIN/VERSIONS" <<EOF
kubernetes $KUBE_VERSION
etcd $ETCD_VERSION
go $("$GO" env GOVERSION)
built $BUILD_DATE
EOF

gocache_publish
