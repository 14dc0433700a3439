#!/usr/bin/env bash
# build-kube-score.sh - build kube-score (github.com/zegl/kube-score, a Kubernetes manifest
# scanner) from the Go module proxy into a version-keyed cache dir, for tests/security.
#
# Usage:  scripts/build-kube-score.sh
#   The last line on stdout is the path of the kube-score binary; everything else goes to stderr.
#
# Environment:
#   KUBE_SCORE_VERSION  release to build (default below)
#   REDKUBE_BIN_CACHE   cache root (default: $HOME/.cache/redkube/bin)
#   GO                  optional path to the go binary
#
# Exit codes: 0 ok, 1 build/verification failure, 2 no Go toolchain / bad usage.
set -euo pipefail

KUBE_SCORE_VERSION="${KUBE_SCORE_VERSION:-v1.20.0}"

prog="build-kube-score.sh"
# shellcheck source=gocache.sh
source "$(dirname "$0")/gocache.sh"

[[ "$KUBE_SCORE_VERSION" =~ ^v[0-9]+\.[0-9]+\.[0-9]+$ ]] \
    || die 2 "KUBE_SCORE_VERSION '$KUBE_SCORE_VERSION' is not a vX.Y.Z version"
MODULE="github.com/zegl/kube-score"

CACHE_ROOT="${REDKUBE_BIN_CACHE:-$HOME/.cache/redkube/bin}"
NAME="kube-score-${KUBE_SCORE_VERSION}"
FINAL="$CACHE_ROOT/$NAME"

RESULT="$FINAL/kube-score"
cache_complete() { [[ -f "$FINAL/kube-score" && -x "$FINAL/kube-score" ]]; }
gocache_start

ldflags="-s -w -X main.version=${KUBE_SCORE_VERSION#v}"
log "building kube-score $KUBE_SCORE_VERSION into $FINAL (go: $("$GO" env GOVERSION), nice 19)"
(cd "$TMP" && GOBIN="$BIN" gocmd install -trimpath -ldflags "$ldflags" \
    "$MODULE/cmd/kube-score@$KUBE_SCORE_VERSION") \
    || die 1 "building kube-score $KUBE_SCORE_VERSION failed"

out="$("$BIN/kube-score" version 2>&1)" || die 1 "kube-score failed to run: $out"
[[ "$out" == *"${KUBE_SCORE_VERSION#v}"* ]] || die 1 "kube-score reports '$out'"

gocache_publish
