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
# shellcheck source=../scripts/gocache.sh
source "$(dirname "$0")/../scripts/gocache.sh"

[[ "$HELM_VERSION" == v* ]] || HELM_VERSION="v$HELM_VERSION"
semver_re='^v[34]\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$'
[[ "$HELM_VERSION" =~ $semver_re ]] || die 2 "HELM_VERSION '$HELM_VERSION' is not a v3.X.Y or v4.X.Y version"
MODULE="helm.sh/helm/${HELM_VERSION%%.*}"   # helm.sh/helm/v4

CACHE_ROOT="${REDKUBE_BIN_CACHE:-$HOME/.cache/redkube/bin}"
NAME="helm-${HELM_VERSION}"
FINAL="$CACHE_ROOT/$NAME"

RESULT="$FINAL/helm"
cache_complete() { [[ -f "$FINAL/helm" && -x "$FINAL/helm" ]]; }
gocache_start

# The release Makefile stamps the version; without it `helm version` says "v4.3".
ldflags="-s -w -X $MODULE/internal/version.version=$HELM_VERSION"
ldflags+=" -X $MODULE/internal/version.gitTreeState=clean"

log "building helm $HELM_VERSION into $FINAL (go: $("$GO" env GOVERSION), GOFLAGS=$GOFLAGS, nice 19)"
# `go install` runs in $TMP so no go.mod around it (the repo's or the user's) interferes.
(cd "$TMP" && GOBIN="$BIN" gocmd install -trimpath -ldflags "$ldflags" "$MODULE/cmd/helm@$HELM_VERSION") \
    || die 1 "building helm $HELM_VERSION failed"

# ---- verify, then publish atomically -----------------------------------------
out="$("$BIN/helm" version --short 2>&1)" || die 1 "helm failed to run: $out"
[[ "$out" == "$HELM_VERSION"* ]] || die 1 "helm reports '$out', expected '$HELM_VERSION'"

gocache_publish
