#!/bin/sh
# Build the rerankd-client wheel: stage the client's modules from service/rerankd next to this
# pyproject.toml, then build. usage: clients/python/build.sh OUT_DIR [PYTHON]
set -eu
out=$1
python=${2:-python3}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
stage=$root/build/client-python
rm -rf "$stage"
mkdir -p "$stage/src/rerankd/v1"
cp "$here/pyproject.toml" "$here/README.md" "$root/LICENSE" "$stage/"
# rerankd.client and what it imports (tests/deploy/test_packaging.py checks that this is enough).
for module in __init__.py py.typed client.py tracing.py errors.py domain.py; do
    cp "$root/service/rerankd/$module" "$stage/src/rerankd/"
done
cp "$root"/service/rerankd/v1/__init__.py "$root"/service/rerankd/v1/rerank_pb2*.py \
    "$root"/service/rerankd/v1/rerank_pb2.pyi "$root"/service/rerankd/v1/rerank.proto "$stage/src/rerankd/v1/"
mkdir -p "$out"
"$python" -m pip wheel --quiet --no-deps --wheel-dir "$out" "$stage"
