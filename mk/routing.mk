# Routing-strategy benchmark (issue 19): `make bench-routing` (about two minutes; part of
# `make bench`) runs bench/routing.py: a hedged route against fallback-only over a fake with a
# 500 ms tail (p99, extra load, hedges), and a cascade of the embedded model keeping 50 of 1,000
# documents before a Cohere fake (documents billed, time per stage). Writes
# bench/results/routing.md. Included by the Makefile.

ROUTING_ARGS ?=

.PHONY: bench-routing

bench: bench-routing

bench-routing: setup
	$(BIN)/python -m bench.routing $(ROUTING_ARGS)
