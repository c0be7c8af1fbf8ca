"""The cross-encoder: pairs within the model's limit, truncation, and scores of pairs alone."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from rerankd import errors
from rerankd.domain import Truncation
from rerankd.local import model
from rerankd.local.files import bundled_model_dir
from rerankd.local.model import CrossEncoder

from tests.examples import FRANCE_BEST, FRANCE_DOCS, FRANCE_QUERY
from tests.local.support import text


@pytest.fixture(scope="module")
def encoder() -> Iterator[CrossEncoder]:
    yield CrossEncoder(bundled_model_dir(), max_length=128)


def test_scores_rank_the_relevant_document_first(encoder: CrossEncoder) -> None:
    scores = [encoder.score_pair(pair) for pair in encoder.encode(FRANCE_QUERY, FRANCE_DOCS)]
    assert max(range(len(scores)), key=scores.__getitem__) == FRANCE_BEST
    assert scores[FRANCE_BEST] > 0.99 and all(0.0 < s < 0.5 for i, s in enumerate(scores) if i != FRANCE_BEST)


def test_truncation_end_cuts_the_document_at_max_length(encoder: CrossEncoder) -> None:
    short, long = encoder.encode("paris", [text(10, 1), text(400, 2)])
    assert short.tokens < 128
    assert long.tokens == 128
    assert long.ids[0, 0] == encoder.tokenizer.token_to_id("[CLS]")
    assert long.ids[0, -1] == encoder.tokenizer.token_to_id("[SEP]")


def test_truncation_none_names_the_first_document_that_does_not_fit(encoder: CrossEncoder) -> None:
    docs = [text(10, 1), text(12, 2), text(400, 3), text(400, 4)]
    with pytest.raises(errors.InvalidArgument) as caught:
        encoder.encode("paris", docs, truncation=Truncation.NONE)
    assert caught.value.field_violations[0][0] == "documents[2]"
    assert "documents[2]" in caught.value.message and "128" in caught.value.message
    assert len(encoder.encode("paris", docs[:2], truncation=Truncation.NONE)) == 2


def test_truncation_none_refuses_a_query_that_leaves_no_room(encoder: CrossEncoder) -> None:
    with pytest.raises(errors.InvalidArgument) as caught:
        encoder.encode(text(300, 5), ["paris"], truncation=Truncation.NONE)
    assert caught.value.field_violations[0][0] == "query"


def test_max_tokens_per_doc_scores_the_documents_first_tokens(encoder: CrossEncoder) -> None:
    query = "what is the capital of france"
    full = "paris is the capital of france and its largest city"  # one token a word
    (cut,) = encoder.encode(query, [full], max_tokens_per_doc=5)
    (prefix,) = encoder.encode(query, ["paris is the capital of"])
    (whole,) = encoder.encode(query, [full])
    assert cut.tokens == prefix.tokens == whole.tokens - 5
    assert (cut.ids == prefix.ids).all()
    assert encoder.score_pair(cut) == encoder.score_pair(prefix) != encoder.score_pair(whole)


def test_a_pair_alone_scores_the_same_every_time(encoder: CrossEncoder) -> None:
    pairs = encoder.encode("old bridges", [text(30, 7), text(90, 8)])
    first = [encoder.score_pair(p) for p in pairs]
    again = [encoder.score_pair(p) for p in reversed(pairs)][::-1]
    assert first == again


def test_warm_up_refuses_a_max_length_the_model_cannot_take() -> None:
    encoder = CrossEncoder(bundled_model_dir(), max_length=600)  # position table: 512
    with pytest.raises(ValueError, match="lower the max length"):
        encoder.warm_up()


@pytest.mark.parametrize(
    "document",
    [
        " ".join(["unbelievably", "Paris,", "capital", "antidisestablishmentarianism", "x;"] * 40_000),
        "Paris " + " " * 200_000 + "is the capital of France. " * 30,  # mostly whitespace: no cut
        "a" * 150_000 + " Paris",  # one giant word ([UNK]) at the start
        ("Paris" + " " * 20) * 5_000,  # 25 characters a token: the typical prefix is too short
        ("b" * 150 + " ") * 2_000,  # 151 a token ([UNK]s): so is the widest, the whole text decides
    ],
    ids=["long-words", "whitespace-run", "giant-word", "spaced-words", "giant-words"],
)
def test_long_documents_tokenise_from_a_prefix_with_the_same_tokens(
    encoder: CrossEncoder, document: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    cases = [{}, {"max_tokens_per_doc": 7}]
    fast = [encoder.encode(FRANCE_QUERY, [document], **case)[0] for case in cases]
    monkeypatch.setattr(model, "_TYPICAL_CHARS_PER_TOKEN", 10**9)  # no prefix: the whole text
    monkeypatch.setattr(model, "_MAX_CHARS_PER_TOKEN", 10**9)
    whole = [encoder.encode(FRANCE_QUERY, [document], **case)[0] for case in cases]
    for got, expected in zip(fast, whole, strict=True):
        assert got.ids.tolist() == expected.ids.tolist()
        assert got.type_ids.tolist() == expected.type_ids.tolist()
