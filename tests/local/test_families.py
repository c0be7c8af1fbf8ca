"""Model families beyond BERT, on a tiny XLM-RoBERTa graph the tests build (tests/local/graphs.py):
inputs read from the graph, the tokenizer's own pair template, positions up to 8,192, single-logit
and two-class heads, the score activation from the model's config or the options.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from rerankd.config import ProviderConfig, Settings
from rerankd.local.files import ModelFilesError
from rerankd.local.model import CrossEncoder
from rerankd.local.provider import LocalProvider
from rerankd.providers.base import ModelDescription
from rerankd.v1 import rerank_pb2 as pb

from tests.conftest import running_app, stub_for
from tests.local.fakehub import Repo, fake_hub
from tests.local.graphs import reference_logits, write_export, write_model
from tests.local.support import text


def _softmax_last(logits: np.ndarray) -> float:
    shifted = np.exp(logits - logits.max())
    return float(shifted[-1] / shifted.sum())


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


@pytest.fixture(scope="module")
def xlmr(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_model(tmp_path_factory.mktemp("tiny-xlmr"))


def test_an_xlm_roberta_graph_gets_its_own_inputs_template_and_two_class_softmax(xlmr: Path) -> None:
    encoder = CrossEncoder(xlmr, max_length=8192)
    encoder.warm_up()
    assert (encoder.family, encoder.position_limit, encoder.labels) == ("xlm-roberta", 8192, 2)
    assert {i.name for i in encoder.session.get_inputs()} == {"input_ids", "attention_mask"}
    (pair,) = encoder.encode("paris capital", ["the old city of paris"])
    tokens = [encoder.tokenizer.id_to_token(i) for i in pair.ids[0]]
    assert tokens == [
        "<s>",
        "paris",
        "capital",
        "</s>",
        "</s>",
        "the",
        "old",
        "city",
        "<unk>",
        "paris",
        "</s>",
    ]
    expected = _softmax_last(reference_logits(pair.ids[0].tolist(), labels=2))
    assert encoder.score_pair(pair) == pytest.approx(expected, abs=1e-6)


def test_pairs_up_to_8192_tokens_where_the_model_has_the_positions(xlmr: Path) -> None:
    encoder = CrossEncoder(xlmr, max_length=8192)
    (long,) = encoder.encode("paris", [text(9000, 4)])
    assert long.tokens == 8192
    assert encoder.score_pair(long) == pytest.approx(
        _softmax_last(reference_logits(long.ids[0].tolist(), labels=2)), abs=1e-5
    )
    with pytest.raises(ValueError, match="over the 8192 positions"):
        CrossEncoder(xlmr, max_length=8200).warm_up()


@pytest.mark.parametrize(
    ("labels", "config", "activation", "expected"),
    [
        (1, {}, None, lambda logits: _sigmoid(float(logits[0]))),
        (
            1,
            {"sentence_transformers": {"activation_fn": "torch.nn.modules.linear.Identity"}},
            None,
            lambda logits: float(logits[0]),
        ),
        (
            1,
            {"sbert_ce_default_activation_function": "torch.nn.modules.linear.Identity"},
            "sigmoid",
            lambda logits: _sigmoid(float(logits[0])),
        ),
        (2, {}, "none", lambda logits: float(logits[-1])),
        (2, {}, "sigmoid", lambda logits: _sigmoid(float(logits[-1]))),
    ],
    ids=["one-logit-sigmoid", "identity-from-config", "option-overrides-config", "none", "two-class-sigmoid"],
)
def test_the_score_activation_comes_from_the_config_or_the_options(
    tmp_path: Path,
    labels: int,
    config: dict[str, object],
    activation: str | None,
    expected: Callable[[np.ndarray], float],
) -> None:
    encoder = CrossEncoder(write_model(tmp_path, labels=labels, config=config), activation=activation)
    encoder.warm_up()
    (pair,) = encoder.encode("paris", ["the city of paris"])
    logits = reference_logits(pair.ids[0].tolist(), labels=labels)
    assert encoder.score_pair(pair) == pytest.approx(expected(logits), abs=1e-6)


def test_softmax_on_a_single_logit_is_refused_at_start_up(tmp_path: Path) -> None:
    encoder = CrossEncoder(write_model(tmp_path, labels=1), activation="softmax")
    with pytest.raises(ValueError, match="two or more classes"):
        encoder.warm_up()


def test_max_length_is_checked_against_the_model_before_loading(xlmr: Path) -> None:
    ctx = type("Ctx", (), {"settings": Settings()})()

    def provider(**options: object) -> LocalProvider:
        config = ProviderConfig(kind="local", options={"model_dir": str(xlmr), **options})
        return LocalProvider.create("x", config, ctx)

    with pytest.raises(ModelFilesError, match="max_length 9000 is over the 8192 positions"):
        provider(max_length=9000).prepare()
    assert provider(max_length=8192).prepare().config["model_type"] == "xlm-roberta"
    described = provider().describe()
    assert described.max_length == 512  # the default, within the model's limit
    fresh = provider()
    fresh.prepare()
    assert fresh.describe() == ModelDescription("xlm-roberta", 512, f"dir {xlmr}")


async def test_an_xlm_roberta_model_from_the_hub_is_served_at_8192_tokens(
    xlmr: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    names = ("onnx/model.onnx", "tokenizer.json", "config.json", "tokenizer_config.json")
    files = {name: xlmr / name for name in names}
    with fake_hub({"tiny/xlm-reranker": Repo(files)}) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        options = {"model": "tiny/xlm-reranker", "cache_dir": str(tmp_path), "max_length": 8192, "threads": 1}
        providers = {"xlmr": {"kind": "local", "options": options}}
        async with running_app(providers=providers, local_enabled=False) as app, stub_for(app) as stub:
            docs = ["the city of paris", text(9000, 5)]
            reply = await stub.Rerank(
                pb.RerankRequest(
                    model="xlm-reranker", query="paris", documents=[pb.Document(text=d) for d in docs]
                ),
                timeout=60,
            )
            assert (reply.provider, reply.model) == ("xlmr", "xlm-reranker")
            assert reply.usage.total_tokens == 9 + 8192  # <s> paris </s></s> the city <unk> paris </s>
            listed = await stub.ListModels(pb.ListModelsRequest(), timeout=10)
            (target,) = next(m for m in listed.models if m.name == "xlm-reranker").targets
            assert (target.family, target.max_length, target.source) == (
                "xlm-roberta",
                8192,
                "hub tiny/xlm-reranker@0123456789abcdef0123456789abcdef01234567",
            )


@pytest.mark.parametrize(
    ("options", "settings", "message"),
    [
        ({"model_dir": "/m", "model": "a/b"}, {}, "model_dir and model exclude each other"),
        ({}, {"model_dir": "/m", "local_model": "a/b"}, "exclude each other"),
        ({"activation": "tanh"}, {}, "activation must be one of sigmoid, softmax, none"),
        ({"passages": {"tokens": 300, "pool": "best"}}, {}, "options.passages pool must be one of"),
        ({"revisions": "main"}, {}, "unknown options"),
    ],
)
def test_local_options_are_checked_when_the_provider_is_made(
    options: dict[str, object], settings: dict[str, object], message: str
) -> None:
    ctx = type("Ctx", (), {"settings": Settings(**settings)})()
    with pytest.raises(ValueError, match=message):
        LocalProvider.create("x", ProviderConfig(kind="local", options=options), ctx)


def test_a_hub_model_answers_to_its_repo_name_unless_named() -> None:
    ctx = type("Ctx", (), {"settings": Settings(local_model="BAAI/bge-reranker-v2-m3")})()
    default = LocalProvider.create("local", ProviderConfig(kind="local"), ctx)
    assert (default.model_name, default.source.repo_id, default.source.revision) == (
        "bge-reranker-v2-m3",
        "BAAI/bge-reranker-v2-m3",
        "main",
    )
    assert default.describe().source == "hub BAAI/bge-reranker-v2-m3@main"  # before it is fetched
    named = LocalProvider.create("local", ProviderConfig(kind="local", models=["m3"]), ctx)
    assert named.model_name == "m3"


async def test_the_readme_export_layout_is_what_the_loader_reads(tmp_path: Path) -> None:
    """README's bge-reranker-v2-m3 recipe: RERANKD_MODEL_DIR + RERANKD_LOCAL_MODEL_NAME +
    RERANKD_LOCAL_MAX_LENGTH on an Optimum export folder; `rerankd models` shows it."""
    folder = write_export(tmp_path / "bge-reranker-v2-m3-onnx")
    settings = {"model_dir": folder, "local_model_name": "bge-reranker-v2-m3", "local_max_length": 1024}
    async with running_app(**settings) as app, stub_for(app) as stub:
        listed = await stub.ListModels(pb.ListModelsRequest(), timeout=10)
        (target,) = next(m for m in listed.models if m.name == "bge-reranker-v2-m3").targets
        assert (target.family, target.max_length, target.source) == ("xlm-roberta", 1024, f"dir {folder}")
        reply = await stub.Rerank(
            pb.RerankRequest(
                model="bge-reranker-v2-m3",
                query="paris",
                documents=[pb.Document(text="the old city"), pb.Document(text="the city of paris")],
            ),
            timeout=30,
        )
        assert (reply.model, reply.provider, len(reply.results)) == ("bge-reranker-v2-m3", "local", 2)
        provider = app.providers["local"]
        assert isinstance(provider, LocalProvider) and provider.files is not None
        cuda = "CUDAExecutionProvider" in ort.get_available_providers()
        assert provider.files.onnx.name == ("model.onnx" if cuda else "model_quantized.onnx")
    ctx = type("Ctx", (), {"settings": Settings()})()
    config = ProviderConfig(kind="local", options={"model_dir": str(folder), "quantized": False})
    full = LocalProvider.create("fp32", config, ctx).prepare()
    assert full.onnx.name == "model.onnx"
    encoder = CrossEncoder(full)  # its weights come from model.onnx_data beside it
    (pair,) = encoder.encode("paris", ["the city of paris"])
    assert encoder.score_pair(pair) == pytest.approx(
        _sigmoid(float(reference_logits(pair.ids[0].tolist(), 1)[0])), abs=1e-6
    )
