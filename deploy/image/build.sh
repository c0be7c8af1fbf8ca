#!/bin/sh
# `make image`: build deploy/Dockerfile with whichever container engine works here.
#
# usage: deploy/image/build.sh TAG [PYTHON_IMAGE]
#   ENGINE=docker|podman|buildah picks one; default: the first that works (a docker client
#   without a daemon does not count). PYTHON_IMAGE is the base (default python:3.11-slim);
#   deploy/image/base.sh makes one locally when no registry can be reached (make image-base).
# The host's pip configuration and CA bundle go in as build secrets (deploy/image/pip_secrets.py),
# so RUN steps can reach the package index through a TLS-re-signing proxy; no layer keeps them.
# The image is built in Docker format: the OCI format has no HEALTHCHECK.
set -eu
tag=$1
base=${2:-python:3.11-slim}
cd "$(dirname "$0")/../.."

engine=${ENGINE:-}
if [ -z "$engine" ]; then
    if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then engine=docker
    elif command -v podman >/dev/null 2>&1 && podman info >/dev/null 2>&1; then engine=podman
    elif command -v buildah >/dev/null 2>&1; then engine=buildah
    else
        echo "make image: no container engine (docker with a daemon, podman or buildah)." >&2
        echo "  On Debian/Ubuntu: apt-get install buildah (then: make image)." >&2
        exit 2
    fi
fi
# buildah without a storage configuration: vfs works on any filesystem (overlay may not).
if [ "$engine" = buildah ] && [ -z "${STORAGE_DRIVER:-}" ] && [ ! -e /etc/containers/storage.conf ]; then
    export STORAGE_DRIVER=vfs
fi

secrets=build/image/secrets
python3 deploy/image/pip_secrets.py "$secrets"
trap 'rm -rf "$secrets"' EXIT
set -- --build-arg "PYTHON_IMAGE=$base" -f deploy/Dockerfile -t "$tag" \
    --secret "id=pip.conf,src=$secrets/pip.conf" --secret "id=ca.pem,src=$secrets/ca.pem"
echo "make image: $engine, base $base -> $tag"
case $engine in
    docker) DOCKER_BUILDKIT=1 docker build "$@" . ;;
    podman) podman build --format docker --layers "$@" . ;;
    buildah) buildah bud --isolation "${BUILDAH_ISOLATION:-chroot}" --format docker --layers "$@" . ;;
    *) echo "make image: unknown ENGINE=$engine (docker, podman or buildah)" >&2; exit 2 ;;
esac
