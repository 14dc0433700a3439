# private-apt.sh - what fetch-valkey-tls.sh and build-valkey-tls.sh share (sourced, not run):
# a server binary's cache entry, and apt-get with a private configuration (its own sources and
# lists in a temporary directory: /etc/apt untouched, nothing installed).
#
# The caller sets `prog`, calls `server_cache ENTRY` (sets CACHE, DIR and FINAL, the entry's
# valkey-server), returns early when FINAL is good, then calls `private_apt_update "deb ..."`
# (sets TMP, removed at exit) and runs `private_apt_get ...` and `private_apt_cache ...`.

die() {
    printf '%s: error: %s\n' "$prog" "$*" >&2
    exit 1
}

server_cache() {
    [ -n "${REDKUBE_CACHE:-}" ] || [ -n "${HOME:-}" ] || die "neither REDKUBE_CACHE nor HOME is set"
    CACHE="${REDKUBE_CACHE:-$HOME/.cache/redkube}"
    DIR="$CACHE/servers/$1"
    FINAL="$DIR/valkey-server"
}

private_apt_get() {
    apt-get -o "Dir::Etc::sourcelist=$TMP/sources.list" -o Dir::Etc::sourceparts=/nonexistent \
        -o "Dir::State::Lists=$TMP/lists" -o "Dir::Cache=$TMP/cache" -o Debug::NoLocking=1 -q "$@"
}

private_apt_cache() {
    apt-cache -o "Dir::Etc::sourcelist=$TMP/sources.list" -o Dir::Etc::sourceparts=/nonexistent \
        -o "Dir::State::Lists=$TMP/lists" -o "Dir::Cache=$TMP/cache" -q "$@"
}

private_apt_update() {
    command -v apt-get >/dev/null 2>&1 || die "apt-get is needed (Debian bookworm)"
    mkdir -p "$DIR" 2>/dev/null || die "cannot create $DIR"
    TMP=$(mktemp -d "$DIR/.work.XXXXXX" 2>/dev/null) \
        || die "cannot create a temporary directory in $DIR"
    trap 'rm -rf "$TMP"' EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    chmod 755 "$TMP"  # apt's download sandbox user must be able to write here
    mkdir -p "$TMP/lists/partial" "$TMP/cache/archives/partial"
    echo "$1" >"$TMP/sources.list"
    private_apt_get update >"$TMP/apt.log" 2>&1 \
        || die "apt-get update of '$1' failed: $(tail -n 1 "$TMP/apt.log")"
}
