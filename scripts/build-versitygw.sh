#!/usr/bin/env bash
# build-versitygw.sh - build the Versity S3 gateway (github.com/versity/versitygw) from the Go
# module proxy into a version-keyed cache dir: the real S3-compatible server the backup tests
# and bench/backup.py keep backups in (its posix backend: buckets are directories).
#
# Usage:  scripts/build-versitygw.sh
#   The last line on stdout is the path of the `versitygw` binary; everything else goes to stderr.
#
# Environment:
#   VERSITYGW_VERSION  module version to build (default below)
#   REDKUBE_BIN_CACHE  cache root (default: $HOME/.cache/redkube/bin)
#   GO                 optional path to the go binary
#
# Exit codes: 0 ok, 1 build/verification failure, 2 no Go toolchain / bad usage.
set -euo pipefail

VERSITYGW_VERSION="${VERSITYGW_VERSION:-v1.8.0}"

prog="build-versitygw.sh"
# shellcheck source=gocache.sh
source "$(dirname "$0")/gocache.sh"

[[ "$VERSITYGW_VERSION" =~ ^v[0-9]+\.[0-9]+\.[0-9]+$ ]] \
    || die 2 "VERSITYGW_VERSION '$VERSITYGW_VERSION' is not a vX.Y.Z version"
MODULE="github.com/versity/versitygw"

CACHE_ROOT="${REDKUBE_BIN_CACHE:-$HOME/.cache/redkube/bin}"
NAME="versitygw-${VERSITYGW_VERSION}"
FINAL="$CACHE_ROOT/$NAME"

RESULT="$FINAL/versitygw"
cache_complete() { [[ -x "$FINAL/versitygw" ]]; }
gocache_start

log "building versitygw $VERSITYGW_VERSION into $FINAL (go: $("$GO" env GOVERSION), nice 19)"
(cd "$TMP" && GOBIN="$BIN" gocmd install -trimpath -ldflags "-s -w" \
    "$MODULE/cmd/versitygw@$VERSITYGW_VERSION") \
    || die 1 "building versitygw $VERSITYGW_VERSION failed"

out="$("$BIN/versitygw" --version 2>&1)" || die 1 "versitygw failed to run: $out"

gocache_publish
