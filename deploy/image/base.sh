#!/bin/sh
# Build the Python base image locally with debootstrap, for hosts that cannot pull
# python:3.11-slim (no registry reachable). Debian bookworm, minbase, python3 3.11 from Debian.
#
# usage: deploy/image/base.sh ENGINE TAG
#   ENGINE  docker, podman or buildah (as `make image` picked it); TAG e.g. localhost/rerankd-base:bookworm
# Needs root and debootstrap. DEBIAN_MIRROR overrides the mirror (default: deb.debian.org).
# Then: make image PYTHON_IMAGE=TAG (make image-base does both).
set -eu
engine=$1
tag=$2
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
work=${BASE_WORKDIR:-build/image/base}
rootfs=$work/rootfs

rm -rf "$rootfs"
mkdir -p "$rootfs"
# python3-venv brings ensurepip (the builder stage makes a venv); ca-certificates for the hosted
# providers' TLS; passwd (groupadd/useradd) is part of minbase.
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    bookworm "$rootfs" "$mirror"
# What a container never needs: package indexes, caches, logs, manuals, translations.
# The packages' copyright files stay (/usr/share/doc/*/copyright).
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/* "$rootfs"/var/cache/debconf/*-old \
    "$rootfs"/var/log/* "$rootfs"/usr/share/man "$rootfs"/usr/share/info "$rootfs"/usr/share/locale \
    "$rootfs"/usr/share/lintian "$rootfs"/usr/share/linda
find "$rootfs"/usr/share/doc -type f ! -name copyright -delete
find "$rootfs" -xdev -name __pycache__ -type d -prune -exec rm -rf {} +
tar -C "$rootfs" --numeric-owner -cf "$work/rootfs.tar" .
rm -rf "$rootfs"
cat >"$work/Containerfile" <<'DOCKERFILE'
FROM scratch
ADD rootfs.tar /
ENV LANG=C.UTF-8 PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
CMD ["python3"]
DOCKERFILE
case $engine in
    buildah) buildah bud --isolation chroot --format docker -t "$tag" -f "$work/Containerfile" "$work" ;;
    *) "$engine" build -t "$tag" -f "$work/Containerfile" "$work" ;;
esac
rm -f "$work/rootfs.tar"
