# gocache.sh - what testbed/build-binaries.sh and charts/build-helm.sh share (sourced, not run):
# build Go binaries from the module proxy into a version-keyed cache directory, gently, once.
#
# The caller sets `prog`, CACHE_ROOT, NAME (the cache entry), FINAL="$CACHE_ROOT/$NAME" and
# RESULT (the line printed when the cache is complete), defines `cache_complete`, then calls
# `gocache_start`, builds with `gocmd` into $BIN, and ends with `gocache_publish`.

log() { printf '%s: %s\n' "$prog" "$*" >&2; }
die() { local code="$1"; shift; printf '%s: error: %s\n' "$prog" "$*" >&2; exit "$code"; }

# Nothing to do when cached (Go not even needed); otherwise find Go, take the cache lock (then
# look again), and prepare $TMP, $BIN and `gocmd`.
gocache_start() {
    if cache_complete; then echo "$RESULT"; exit 0; fi

    GO="${GO:-$(command -v go 2>/dev/null || true)}"
    if [[ -z "$GO" && -x /usr/local/go/bin/go ]]; then GO=/usr/local/go/bin/go; fi
    if [[ -z "$GO" ]] || ! "$GO" version >/dev/null 2>&1; then
        die 2 "Go toolchain not found (install Go >= 1.26 and put 'go' on PATH, or set GO=/path/to/go)"
    fi
    mkdir -p "$CACHE_ROOT"

    # Serialise concurrent runs for the same entry; re-check after the lock.
    if command -v flock >/dev/null 2>&1; then
        exec 9>"$CACHE_ROOT/.$NAME.lock"
        if ! flock -n 9; then
            log "another build of $NAME is running; waiting for it ..."
            flock 9
        fi
        if cache_complete; then echo "$RESULT"; exit 0; fi
    fi

    # Be gentle: lowest CPU (and IO) priority, at most 2 packages in parallel.
    export CGO_ENABLED=0
    export GOTOOLCHAIN=local
    export GOFLAGS="${GOFLAGS:+$GOFLAGS }-p=2"
    NICE=(nice -n 19)
    if command -v ionice >/dev/null 2>&1; then NICE+=(ionice -c 3); fi
    GOPID=

    # Built under a temp dir on the same filesystem as the cache and renamed into place at the
    # end, so an interrupted build never leaves a half-filled cache directory.
    TMP="$(mktemp -d "$CACHE_ROOT/.build-$NAME.XXXXXX")"
    trap gocache_cleanup EXIT
    trap 'gocache_interrupted 130' INT
    trap 'gocache_interrupted 143' TERM
    BIN="$TMP/bin"
    mkdir -p "$BIN"
    START=$SECONDS
}

# go runs as a tracked background child so a TERM/INT to the script stops it too.
gocmd() {
    local rc=0
    "${NICE[@]}" "$GO" "$@" >&2 &
    GOPID=$!
    wait "$GOPID" || rc=$?
    GOPID=
    return "$rc"
}

gocache_cleanup() { chmod -R u+w "$TMP" 2>/dev/null || true; rm -rf "$TMP"; }

gocache_interrupted() {
    log "interrupted; discarding the partial build"
    if [[ -n "$GOPID" ]]; then kill -INT "$GOPID" 2>/dev/null || true; wait "$GOPID" 2>/dev/null || true; fi
    exit "$1"
}

# Move the verified $BIN into place as $FINAL (a stale entry is swapped out) and print RESULT.
gocache_publish() {
    if [[ -e "$FINAL" ]]; then mv "$FINAL" "$TMP/old"; fi
    mv -T "$BIN" "$FINAL"
    log "done in $((SECONDS - START))s: $RESULT"
    echo "$RESULT"
}
