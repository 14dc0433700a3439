#!/usr/bin/env bash
# build-local-path.sh - build rancher's local-path-provisioner, the real dynamic volume
# provisioner of the real-node test bed, from the Go module proxy into a version-keyed cache dir.
#
# Usage:  testbed/build-local-path.sh
#   The last line on stdout is the bin directory (it holds local-path-provisioner); everything
#   else goes to stderr.
#
# Environment:
#   LOCAL_PATH_VERSION  local-path-provisioner release (default below), e.g. v0.0.30
#   REDKUBE_BIN_CACHE   cache root (default: ${REDKUBE_CACHE:-$HOME/.cache/redkube}/bin)
#   GO                  optional path to the go binary
#
# Its go.mod has no replace directives, so `go install module@version` builds it with exactly
# the dependency versions upstream pins. Exit codes: 0 ok, 1 build/verification failure, 2 no
# Go toolchain / bad usage.
set -euo pipefail

LOCAL_PATH_VERSION="${LOCAL_PATH_VERSION:-v0.0.30}"

prog="build-local-path.sh"
# shellcheck source=../scripts/gocache.sh
source "$(dirname "$0")/../scripts/gocache.sh"

MODULE=github.com/rancher/local-path-provisioner
CACHE_ROOT="${REDKUBE_BIN_CACHE:-${REDKUBE_CACHE:-$HOME/.cache/redkube}/bin}"
NAME="local-path-provisioner-${LOCAL_PATH_VERSION}"
FINAL="$CACHE_ROOT/$NAME"
RESULT="$FINAL"

cache_complete() { [[ -f "$FINAL/local-path-provisioner" && -x "$FINAL/local-path-provisioner" ]]; }
gocache_start

# Upstream's scripts/build stamps main.VERSION; without it `--version` says 0.0.1.
ldflags="-s -w -X main.VERSION=$LOCAL_PATH_VERSION"
log "building local-path-provisioner $LOCAL_PATH_VERSION into $FINAL (go: $("$GO" env GOVERSION), GOFLAGS=$GOFLAGS, nice 19)"
# `go install` runs in $TMP so no go.mod around it (the repo's or the user's) interferes.
(cd "$TMP" && GOBIN="$BIN" gocmd install -trimpath -ldflags "$ldflags" "$MODULE@$LOCAL_PATH_VERSION") \
    || die 1 "building local-path-provisioner $LOCAL_PATH_VERSION failed"

# ---- verify, then publish atomically -----------------------------------------
out="$("$BIN/local-path-provisioner" --version 2>&1)" || die 1 "local-path-provisioner failed to run: $out"
grep -qF -- "$LOCAL_PATH_VERSION" <<<"$out" || die 1 "local-path-provisioner reports '$out', expected '$LOCAL_PATH_VERSION'"
if file "$BIN/local-path-provisioner" 2>/dev/null | grep -q "dynamically linked"; then
    die 1 "local-path-provisioner is dynamically linked (CGO_ENABLED=0 expected)"
fi

gocache_publish
