"""rerankd's `infinity` provider against a real Infinity server serving the embedded model on CPU.

Opt-in: `make test-infinity` builds Infinity's venv (about 6 GB: its ONNX engine needs torch) and
sets RERANKD_INFINITY_EMB to its `infinity_emb`; without it this module is skipped. Infinity gets
the embedded model's own files (model.onnx, tokenizer) plus the config.json transformers needs,
binds 127.0.0.1, and must rank as the `local` provider ranks the same pairs.

Not the same scores: Infinity's ONNX cross-encoder tokenises without token_type_ids
(transformer/crossencoder/optimum.py, `return_token_type_ids=False`), so a BERT model sees every
token as segment 0 and its scores move (0.985 against 0.9999 for the best pair here, 0.007
against 0.147 for the second); the relevant pairs still rank alike.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from rerankd.config import ProviderConfig, Settings
from rerankd.domain import Document
from rerankd.local.files import bundled_model_dir
from rerankd.providers.base import ProviderCall
from rerankd.providers.http import HttpClient
from rerankd.providers.registry import ProviderContext, create_provider

INFINITY = os.environ.get("RERANKD_INFINITY_EMB", "")
pytestmark = pytest.mark.skipif(not INFINITY, reason="RERANKD_INFINITY_EMB unset (make test-infinity)")

# ms-marco-MiniLM-L-12-v2, the bundled model: a BERT sequence classifier with one label.
CONFIG = {
    "architectures": ["BertForSequenceClassification"],
    "model_type": "bert",
    "hidden_size": 384,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 1536,
    "hidden_act": "gelu",
    "max_position_embeddings": 512,
    "type_vocab_size": 2,
    "vocab_size": 30522,
    "layer_norm_eps": 1e-12,
    "pad_token_id": 0,
    "num_labels": 1,
}
QUERY = "capital of france"
TEXTS = ["Paris is the capital of France", "Bananas are yellow", "Lyon is a city of France", "Oslo"]


@pytest.fixture(scope="module")
def infinity(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("model")
    for item in Path(bundled_model_dir()).iterdir():
        shutil.copy(item, folder / item.name)
    (folder / "config.json").write_text(json.dumps(CONFIG))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "INFINITY_ANONYMOUS_USAGE_STATS": "0", "DO_NOT_TRACK": "1"}
    args = [INFINITY, "v2", "--model-id", str(folder), "--engine", "optimum", "--device", "cpu"]
    args += ["--host", "127.0.0.1", "--port", str(port)]
    log = folder / "infinity.log"
    with log.open("w") as out:
        child = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2):
                    break
            except OSError:
                if child.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"Infinity did not start: {log.read_text()[-2000:]}")
                time.sleep(1)
        yield url
    finally:
        child.terminate()
        child.wait(timeout=30)


@pytest.fixture
async def http() -> AsyncIterator[HttpClient]:
    client = HttpClient()
    yield client
    await client.aclose()


def _call(**kwargs: object) -> ProviderCall:
    return ProviderCall(
        model="ms-marco-MiniLM-L-12-v2",
        query=QUERY,
        documents=[Document(t) for t in TEXTS],
        timeout=60,
        **kwargs,
    )  # type: ignore[arg-type]


async def test_real_infinity_ranks_as_the_embedded_model(infinity: str, http: HttpClient) -> None:
    ctx = ProviderContext(Settings(), http)
    remote = create_provider("gpu-pool", ProviderConfig(kind="infinity", base_url=infinity), ctx)
    local = create_provider("local", ProviderConfig(kind="local"), ctx)
    await local.start()
    try:
        theirs = await remote.rerank(_call())
        ours = await local.rerank(_call())
    finally:
        await local.aclose()
    mine = {s.index: s.score for s in ours.scores}
    # The two relevant texts rank alike; the two unrelated ones (both near 1e-5) may swap.
    assert [s.index for s in theirs.scores[:2]] == sorted(mine, key=lambda i: -mine[i])[:2] == [0, 2]
    assert theirs.scores[0].index == 0 and theirs.usage.total_tokens > 0
    assert all(0 < s.score < 1 for s in theirs.scores)
    best = await remote.rerank(_call(top_n=2))
    assert [s.index for s in best.scores] == [s.index for s in theirs.scores[:2]]
    raw = await remote.rerank(_call(parameters={"raw_scores": True}))
    assert max(s.score for s in raw.scores) > 1  # logits, as asked
