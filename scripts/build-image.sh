#!/bin/sh
# Build the operator image from ./Dockerfile with the first builder that works here: docker (with
# a running engine), podman or buildah. Usage: scripts/build-image.sh IMAGE [BUILD-ARG...]
# (for instance BASE=python:3.12-slim). Prints the image name once built.
set -eu
cd "$(dirname "$0")/.."
[ $# -ge 1 ] || { echo "usage: $0 IMAGE [NAME=VALUE...]" >&2; exit 2; }
image=$1
shift
args=""
for arg in "$@"; do args="$args --build-arg $arg"; done

if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
    # shellcheck disable=SC2086
    docker build $args -t "$image" .
elif command -v podman >/dev/null 2>&1; then
    # shellcheck disable=SC2086
    podman build $args -t "$image" .
elif command -v buildah >/dev/null 2>&1; then
    # shellcheck disable=SC2086
    buildah build $args -t "$image" .
else
    echo "make image: no image builder here: needs docker (with a running engine), podman or buildah" >&2
    exit 1
fi
echo "$image"
