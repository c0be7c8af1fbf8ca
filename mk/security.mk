# Security checks (SECURITY.md). `make test` runs a bounded, repeatable slice of the hostile-input
# suite (tests/test_fuzz.py, 120 cases per property); `make fuzz` runs it with fresh randomness and
# FUZZ_EXAMPLES cases per property against a live `rerankd serve`.
FUZZ_EXAMPLES ?= 2000

.PHONY: fuzz
fuzz: setup
	RERANKD_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/python -m pytest -q -p no:cacheprovider --timeout=3600 \
		tests/test_fuzz.py
