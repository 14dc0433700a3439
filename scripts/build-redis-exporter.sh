#!/usr/bin/env bash
# build-redis-exporter.sh - build redis_exporter (github.com/oliver006/redis_exporter) from the Go
# module proxy into a version-keyed cache dir: the metrics sidecar of every Redis Pod on the test
# bed (testbed/build-images.sh makes its image from this binary).
#
# Usage:  scripts/build-redis-exporter.sh
#   The last line on stdout is the path of the `redis_exporter` binary; everything else goes to
#   stderr.
#
# Environment:
#   REDKUBE_BIN_CACHE       cache root (default: $HOME/.cache/redkube/bin)
#   GO                      optional path to the go binary
#
# Exit codes: 0 ok, 1 build/verification failure, 2 no Go toolchain / bad usage.
set -euo pipefail

REDIS_EXPORTER_VERSION=v1.74.0  # the hashes below are this version's

prog="build-redis-exporter.sh"
# shellcheck source=gocache.sh
source "$(dirname "$0")/gocache.sh"

[[ "$REDIS_EXPORTER_VERSION" =~ ^v[0-9]+\.[0-9]+\.[0-9]+$ ]] \
    || die 2 "REDIS_EXPORTER_VERSION '$REDIS_EXPORTER_VERSION' is not a vX.Y.Z version"
MODULE="github.com/oliver006/redis_exporter"

CACHE_ROOT="${REDKUBE_BIN_CACHE:-$HOME/.cache/redkube/bin}"
NAME="redis-exporter-${REDIS_EXPORTER_VERSION}"
FINAL="$CACHE_ROOT/$NAME"

RESULT="$FINAL/redis_exporter"
cache_complete() { [[ -x "$FINAL/redis_exporter" ]]; }
gocache_start

# The proxy serves this version's files but neither the module's version list (which `go install
# mod@version` reads) nor its checksum-database entry: so it is built as the main package of a
# dependency of a small wrapper module, its hashes pinned here in go.sum (the dependencies'
# are checked against the checksum database as usual).
cat >"$TMP/go.mod" <<MOD
module redkube.local/redis-exporter

go 1.26

require $MODULE $REDIS_EXPORTER_VERSION
MOD
printf '%s\n' \
    "$MODULE v1.74.0 h1:/ESQZa3xqpQxiQmk4tpo90Y8gPWLpYVF6E5SR262KtM=" \
    "$MODULE v1.74.0/go.mod h1:OAx6fggSdiP8lpFZwUv0kQau31Pft206Qu83Abtm2D0=" >"$TMP/go.sum"
export GONOSUMDB="$MODULE" GOFLAGS="$GOFLAGS -mod=mod"

ldflags="-s -w -X main.BuildVersion=${REDIS_EXPORTER_VERSION#v}"
log "building redis_exporter $REDIS_EXPORTER_VERSION into $FINAL (go: $("$GO" env GOVERSION), nice 19)"
(cd "$TMP" && gocmd build -trimpath -ldflags "$ldflags" -o "$BIN/redis_exporter" "$MODULE") \
    || die 1 "building redis_exporter $REDIS_EXPORTER_VERSION failed"

out="$("$BIN/redis_exporter" --version 2>&1)" || die 1 "redis_exporter failed to run: $out"
[[ "$out" == *"${REDIS_EXPORTER_VERSION#v}"* ]] || die 1 "redis_exporter reports '$out'"

gocache_publish
