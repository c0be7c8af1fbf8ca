# Hostile-input benchmark (issue 17): `make bench-hostile` (about a minute; part of `make bench`)
# runs bench/hostile.py against a real `rerankd serve` and writes bench/results/hostile.md (header
# floods, a gRPC call's p99 beside them, invented model names against the metric series, nested
# metadata). Its figures are the ones SECURITY.md quotes. Included by the Makefile.

HOSTILE_ARGS ?=

.PHONY: bench-hostile

bench: bench-hostile

bench-hostile: setup
	$(BIN)/python -m bench.hostile $(HOSTILE_ARGS)
