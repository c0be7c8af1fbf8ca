# The container image (deploy/README.md): `make image` builds deploy/Dockerfile with docker, podman
# or buildah (ENGINE=... to choose); `make image-base` makes a Python base locally with debootstrap
# for hosts that cannot pull python:3.11-slim (then: make image PYTHON_IMAGE=$(BASE_IMAGE)).
# `make dist`: the rerankd wheel + sdist and the client-only rerankd-client wheel, in dist/.
IMAGE ?= localhost/rerankd:0.1.0
PYTHON_IMAGE ?= python:3.11-slim
BASE_IMAGE ?= localhost/rerankd-base:bookworm
DIST ?= dist

.PHONY: image image-base container-smoke dist

image:
	sh deploy/image/build.sh '$(IMAGE)' '$(PYTHON_IMAGE)'

image-base:
	sh deploy/image/base.sh "$${ENGINE:-buildah}" '$(BASE_IMAGE)'

container-smoke: setup
	bash .ci/container-smoke.sh

dist: setup
	rm -rf $(DIST)
	$(BIN)/python -m build --sdist --wheel --outdir $(DIST) .
	sh clients/python/build.sh $(DIST) $(BIN)/python
	@ls -l $(DIST)
