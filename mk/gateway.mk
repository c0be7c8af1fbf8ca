# Gateway benchmarks (issue 10): `make bench-gateway` (part of `make bench`, a few minutes) writes
# bench/results/gateway.md; `make soak` (10 minutes, in neither `make test` nor `make bench`) writes
# bench/results/soak.md and soak.png. Their tools (plotting, py-spy) are installed here, never as
# runtime dependencies. Included by the Makefile.

GATEWAY_TOOLS := $(VENV)/.gateway-bench-tools
GATEWAY_ARGS ?= --profile 5
SOAK_ARGS ?=

.PHONY: bench-gateway soak

bench: bench-gateway

$(GATEWAY_TOOLS): | $(STAMP)
	$(BIN)/python -m pip install -q 'matplotlib>=3.8,<4' 'py-spy>=0.3.14,<0.5' 'pyinstrument>=4.6,<6'
	@touch $@

bench-gateway: setup $(GATEWAY_TOOLS)
	$(BIN)/python -m bench.gateway $(GATEWAY_ARGS)

soak: setup $(GATEWAY_TOOLS)
	$(BIN)/python -m bench.soak $(SOAK_ARGS)
