# The embedded model's benchmark (bench/local_model.py): rerankd against a sentence-transformers
# CrossEncoder, the naive ONNX path and the CPU's matmul rate; writes bench/results/local_model.md
# and local_model.png. Its extra packages (the torch CPU wheel, sentence-transformers, matplotlib,
# onnx) go into the venv here, never into the service's dependencies. `make bench` runs it (a few
# minutes); `make test` does not. Included by the Makefile.

# This file is read before the Makefile's own targets: keep whatever default goal was set before.
_BENCH_PREVIOUS_GOAL := $(.DEFAULT_GOAL)

BENCH_STAMP := $(VENV)/.bench-local-stamp
BENCH_LOCAL_ARGS ?=
# torch==2.13.0 resolves to the CPU wheel here (plain `torch` would pull the CUDA build).
BENCH_PACKAGES := 'torch==2.13.0' 'sentence-transformers==6.2.0' 'transformers==5.23.0' \
	'matplotlib==3.11.2' 'onnx==1.23.2'

.PHONY: bench-local
bench: bench-local

$(BENCH_STAMP): mk/bench.mk | $(STAMP)
	$(BIN)/python -m pip install -q $(BENCH_PACKAGES)
	@touch $@

bench-local: setup $(BENCH_STAMP)
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(BIN)/python bench/local_model.py $(BENCH_LOCAL_ARGS)

.DEFAULT_GOAL := $(_BENCH_PREVIOUS_GOAL)
