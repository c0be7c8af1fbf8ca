# Real self-hosted rerank engines for the opt-in integration tests (issue 20), never part of
# `make test`: Infinity with its ONNX (optimum) engine needs torch, a venv of about 6 GB.
# `make test-infinity` builds it once under ENGINES_DIR and runs tests/providers/test_infinity_engine.py
# against a real Infinity serving the embedded model's weights on CPU. Included by the Makefile.

ENGINES_DIR ?= /tmp/rerankd-engines
INFINITY_VENV := $(ENGINES_DIR)/infinity
# infinity-emb 0.0.78 loads a local ONNX folder with optimum 1.24 (optimum 2.x refuses its file names).
INFINITY_PACKAGES := 'infinity-emb[server,optimum]==0.0.78' 'optimum[onnxruntime]==1.24.0' 'transformers<4.49' 'numpy<2'

.PHONY: test-infinity

$(INFINITY_VENV)/bin/infinity_emb:
	$(PYTHON) -m venv $(INFINITY_VENV)
	$(INFINITY_VENV)/bin/pip install -q $(INFINITY_PACKAGES)

test-infinity: setup $(INFINITY_VENV)/bin/infinity_emb
	RERANKD_INFINITY_EMB=$(INFINITY_VENV)/bin/infinity_emb $(BIN)/python -m pytest -q tests/providers/test_infinity_engine.py
