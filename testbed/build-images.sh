#!/bin/sh
# The test bed's container images, built on this machine with no registry:
# - a Python base image from Debian's packages (mmdebstrap: python3, python3-venv), with this
#   machine's CA bundle and a pip.conf naming it, so that pip inside a build reaches PyPI the way
#   pip on this machine does;
# - the redkube operator image, built from the project's own Dockerfile by buildah
#   (scripts/build-image.sh, what `make image` runs) on that base.
# Both are saved as docker-archives under the cache (a node's containerd imports them). The base
# is built once per Debian suite, package list and CA bundle; the operator image every run.
# Needs root, buildah and mmdebstrap (.ci/run installs them). Prints the operator archive's path.
set -eu
cd "$(dirname "$0")/.."

CACHE=${REDKUBE_IMAGE_CACHE:-$HOME/.cache/redkube/images}
OPERATOR=${REDKUBE_OPERATOR_IMAGE:-localhost/redkube-operator:dev}
SUITE=bookworm
PACKAGES=python3,python3-venv,ca-certificates
CA=/etc/ssl/certs/ca-certificates.crt
# vfs: no overlay mounts inside a sandbox; chroot: no runtime or network namespace needed.
export STORAGE_DRIVER=vfs BUILDAH_ISOLATION=chroot

for tool in buildah mmdebstrap; do
    command -v "$tool" >/dev/null 2>&1 || {
        echo "build-images: $tool is missing: apt-get install buildah mmdebstrap" >&2
        exit 1
    }
done

key=$({ echo "$SUITE $PACKAGES"; cat "$CA"; } | sha256sum | cut -c1-12)
base=localhost/redkube-python:3.11-$key
mkdir -p "$CACHE"
base_archive=$CACHE/python-base-$key.tar

if ! buildah inspect --type image "$base" >/dev/null 2>&1; then
    if [ -f "$base_archive" ]; then
        buildah pull -q "docker-archive:$base_archive" >/dev/null
    else
        work=$(mktemp -d)
        trap 'rm -rf "$work"' EXIT
        echo "build-images: Debian $SUITE with $PACKAGES (about a minute)" >&2
        mmdebstrap --quiet --variant=minbase --include="$PACKAGES" "$SUITE" "$work/rootfs.tar"
        printf '[global]\ncert = %s\n' "$CA" >"$work/pip.conf"
        container=$(buildah from scratch)
        buildah add "$container" "$work/rootfs.tar" / >/dev/null
        buildah copy "$container" "$CA" "$CA" >/dev/null
        buildah copy "$container" "$work/pip.conf" /etc/pip.conf >/dev/null
        buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
            --cmd python3 "$container"
        buildah commit -q "$container" "$base" >/dev/null
        buildah rm "$container" >/dev/null
        buildah push -q "$base" "docker-archive:$base_archive.part:$base" >/dev/null
        mv "$base_archive.part" "$base_archive"
    fi
fi

scripts/build-image.sh "$OPERATOR" "BASE=$base" >&2
archive=$CACHE/redkube-operator.tar
rm -f "$archive"
buildah push -q "$OPERATOR" "docker-archive:$archive:$OPERATOR" >/dev/null
echo "$archive"
