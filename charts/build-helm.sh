#!/usr/bin/env bash
# build-helm.sh - build the helm CLI from the Go module proxy (no git clone, no
# release download) into a version-keyed cache dir.
#
# Usage:  charts/build-helm.sh
#   The last line on stdout is the path of the helm binary; everything else goes to stderr.
#
# Environment:
#   HELM_VERSION       Helm release to build (default below), e.g. v4.3.1 or v3.22.0
#   REDKUBE_BIN_CACHE  cache root (default: $HOME/.cache/redkube/bin)
#   GO                 optional path to the go binary
#
# Exit codes: 0 ok, 1 build/verification failure, 2 no Go toolchain / bad usage.
set -euo pipefail

# ---- pinned version (overridable) -------------------------------------------
# v4.3.1 is the newest Helm release on the module proxy; v3.22.0 is the newest 3.x.
HELM_VERSION="${HELM_VERSION:-v4.3.1}"
# -----------------------------------------------------------------------------

prog="build-helm.sh"
log() { printf '%s: %s\n' "$prog" "$*" >&2; }
die() { local code="$1"; shift; printf '%s: error: %s\n' "$prog" "$*" >&2; exit "$code"; }

[[ "$HELM_VERSION" == v* ]] || HELM_VERSION="v$HELM_VERSION"
semver_re='^v[34]\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$'
[[ "$HELM_VERSION" =~ $semver_re ]] || die 2 "HELM_VERSION '$HELM_VERSION' is not a v3.X.Y or v4.X.Y version"
MODULE="helm.sh/helm/${HELM_VERSION%%.*}"   # helm.sh/helm/v4

CACHE_ROOT="${REDKUBE_BIN_CACHE:-$HOME/.cache/redkube/bin}"
NAME="helm-${HELM_VERSION}"
FINAL="$CACHE_ROOT/$NAME"

# Fast path: already built -> nothing to do (Go not even needed).
if [[ -f "$FINAL/helm" && -x "$FINAL/helm" ]]; then
    echo "$FINAL/helm"
    exit 0
fi

# ---- toolchain ---------------------------------------------------------------
GO="${GO:-$(command -v go 2>/dev/null || true)}"
if [[ -z "$GO" && -x /usr/local/go/bin/go ]]; then GO=/usr/local/go/bin/go; fi
if [[ -z "$GO" ]] || ! "$GO" version >/dev/null 2>&1; then
    die 2 "Go toolchain not found (install Go >= 1.26 and put 'go' on PATH, or set GO=/path/to/go)"
fi

mkdir -p "$CACHE_ROOT"

# Serialise concurrent runs for the same version; re-check after the lock.
if command -v flock >/dev/null 2>&1; then
    exec 9>"$CACHE_ROOT/.$NAME.lock"
    if ! flock -n 9; then
        log "another build of $NAME is running; waiting for it ..."
        flock 9
    fi
    if [[ -f "$FINAL/helm" && -x "$FINAL/helm" ]]; then
        echo "$FINAL/helm"
        exit 0
    fi
fi

# Be gentle: lowest CPU (and IO) priority, at most 2 packages in parallel.
export CGO_ENABLED=0
export GOTOOLCHAIN=local
export GOFLAGS="${GOFLAGS:+$GOFLAGS }-p=2"
NICE=(nice -n 19)
if command -v ionice >/dev/null 2>&1; then NICE+=(ionice -c 3); fi
# go runs as a tracked background child so a TERM/INT to this script stops it too.
GOPID=
gocmd() {
    local rc=0
    "${NICE[@]}" "$GO" "$@" >&2 &
    GOPID=$!
    wait "$GOPID" || rc=$?
    GOPID=
    return "$rc"
}

# Built into a temp dir on the same filesystem as the cache and renamed into place at the
# end, so an interrupted build never leaves a half-filled cache directory.
TMP="$(mktemp -d "$CACHE_ROOT/.build-$NAME.XXXXXX")"
cleanup() { rm -rf "$TMP"; }
trap cleanup EXIT
on_signal() {
    log "interrupted; discarding the partial build"
    if [[ -n "$GOPID" ]]; then kill -INT "$GOPID" 2>/dev/null || true; wait "$GOPID" 2>/dev/null || true; fi
    exit "$1"
}
trap 'on_signal 130' INT
trap 'on_signal 143' TERM
BIN="$TMP/bin"
mkdir -p "$BIN"

# The release Makefile stamps the version; without it `helm version` says "v4.3".
ldflags="-s -w -X $MODULE/internal/version.version=$HELM_VERSION"
ldflags+=" -X $MODULE/internal/version.gitTreeState=clean"

START=$SECONDS
log "building helm $HELM_VERSION into $FINAL (go: $("$GO" env GOVERSION), GOFLAGS=$GOFLAGS, nice 19)"
# `go install` runs in $TMP so no go.mod around it (the repo's or the user's) interferes.
(cd "$TMP" && GOBIN="$BIN" gocmd install -trimpath -ldflags "$ldflags" "$MODULE/cmd/helm@$HELM_VERSION") \
    || die 1 "building helm $HELM_VERSION failed"

# ---- verify, then publish atomically -----------------------------------------
out="$("$BIN/helm" version --short 2>&1)" || die 1 "helm failed to run: $out"
[[ "$out" == "$HELM_VERSION"* ]] || die 1 "helm reports '$out', expected '$HELM_VERSION'"

if [[ -e "$FINAL" ]]; then   # stale/incomplete dir from elsewhere: swap it out
    mv "$FINAL" "$TMP/old"
fi
mv -T "$BIN" "$FINAL"
log "done in $((SECONDS - START))s: $FINAL/helm"
echo "$FINAL/helm"
