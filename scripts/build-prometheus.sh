#!/usr/bin/env bash
# build-prometheus.sh - build Prometheus and promtool (github.com/prometheus/prometheus) from the Go
# module proxy into a version-keyed cache dir, for tests/observability: a real Prometheus scrapes
# redkube's metrics, and promtool checks the exposition and the alert rules.
#
# Usage:  scripts/build-prometheus.sh
#   The last line on stdout is the directory holding `prometheus` and `promtool`; everything else
#   goes to stderr. The web UI's assets are not built (the tests use the HTTP API only). Of the
#   service discoveries only Kubernetes' (and the built-in static and file ones) is compiled in
#   (Prometheus' build tags remove_all_sd,enable_kubernetes_sd): the cloud providers' SDKs were
#   most of a cold build's time.
#
# Environment:
#   PROMETHEUS_VERSION  module version to build (default below; v0.316.0 is Prometheus 3.16.0)
#   REDKUBE_BIN_CACHE   cache root (default: $HOME/.cache/redkube/bin)
#   GO                  optional path to the go binary
#
# Exit codes: 0 ok, 1 build/verification failure, 2 no Go toolchain / bad usage.
set -euo pipefail

PROMETHEUS_VERSION="${PROMETHEUS_VERSION:-v0.316.0}"

prog="build-prometheus.sh"
# shellcheck source=gocache.sh
source "$(dirname "$0")/gocache.sh"

[[ "$PROMETHEUS_VERSION" =~ ^v[0-9]+\.[0-9]+\.[0-9]+$ ]] \
    || die 2 "PROMETHEUS_VERSION '$PROMETHEUS_VERSION' is not a vX.Y.Z version"
MODULE="github.com/prometheus/prometheus"

CACHE_ROOT="${REDKUBE_BIN_CACHE:-$HOME/.cache/redkube/bin}"
NAME="prometheus-${PROMETHEUS_VERSION}"
FINAL="$CACHE_ROOT/$NAME"

RESULT="$FINAL"
cache_complete() { [[ -x "$FINAL/prometheus" && -x "$FINAL/promtool" ]]; }
gocache_start

log "building prometheus and promtool $PROMETHEUS_VERSION into $FINAL (go: $("$GO" env GOVERSION), nice 19)"
(cd "$TMP" && GOBIN="$BIN" gocmd install -trimpath -ldflags "-s -w" \
    -tags remove_all_sd,enable_kubernetes_sd \
    "$MODULE/cmd/prometheus@$PROMETHEUS_VERSION" "$MODULE/cmd/promtool@$PROMETHEUS_VERSION") \
    || die 1 "building prometheus $PROMETHEUS_VERSION failed"

"$BIN/promtool" --version >/dev/null 2>&1 || die 1 "promtool does not run"
"$BIN/prometheus" --version >/dev/null 2>&1 || die 1 "prometheus does not run"

gocache_publish
