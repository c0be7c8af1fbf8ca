"""The cross-encoder itself: tokenise query + document pairs and score them with ONNX Runtime.

Every pair is run alone, as a batch of one, and parallelism comes from running pairs on several
threads (one per core, `intra_op_num_threads=1`) over one shared session. This was measured
against the alternatives on the 2-core AVX-512 VNNI machine this project runs on (CPU ms of one
thread per pair, no padding, best of 3; query + document tokens):

    tokens                     25     45     75    115    215    395
    int8, batch of 1          6.4   10.0   15.2   23.3   45.6  112.1
    int8, batch of 4          4.6    8.0   13.6   21.6   46.0  134.9
    int8, batch of 16         4.2    7.8   14.0   25.4   56.0  139.9
    fp32 rewrite, batch of 1 15.7   22.2   33.0   47.8   87.7  184.5
    fp32 rewrite, batch of 16 9.3   16.8   30.2   47.1  102.8  223.1

and, with 2 threads, 2 workers x 1 intra-op thread beat 1 worker x 2 threads by 40-50% at batch
of one (105 tokens: 81 vs 57 pairs/s). So:

* batching only pays for short pairs (a fixed ~2 ms of kernel dispatch per run is amortised);
  from ~200 tokens up a batch of one is as fast or faster (attention and activations of a batch
  fall out of the 4 MB L2). Even perfect same-length batching would save about 5% on 110-token
  pairs and under 3% on the benchmark's mixed load of 25-512 tokens, whose cost is mostly in
  long pairs (bench/results/local_model.md repeats the table above on every run);
* the int8 model quantises activations per batch tensor, so a pair's score moves with its
  batch-mates (up to 0.14 logit) unless the batch is a canonical function of one request; batches
  of one make a pair's score a function of the pair alone, whatever else is in flight and
  whichever other documents share its request;
* the fp32 rewrite (deterministic under any batching) costs 1.7-2.5x the int8 CPU time here.

A batch of one also means no padding is ever computed, which is what length bucketing is for.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Encoding, Tokenizer

from rerankd import errors
from rerankd.domain import Truncation
from rerankd.local.files import ModelFiles, folder_files
from rerankd.passages import Passages

ACTIVATIONS = ("sigmoid", "softmax", "none")
_FEEDS = ("input_ids", "attention_mask", "token_type_ids", "position_ids")
# Families whose position table starts after the padding index (max_position_embeddings - 2 usable).
_OFFSET_POSITIONS = ("roberta", "xlm-roberta", "xlm-roberta-xl", "camembert", "longformer")
_SANE_LIMIT = 1_000_000  # tokenizer_config's model_max_length is 1e30 when the export did not know


@dataclass(frozen=True, slots=True)
class Pair:
    """A tokenised query + document pair (or one passage of a document), ready to score."""

    ids: np.ndarray  # int64 [1, n]
    type_ids: np.ndarray  # int64 [1, n]
    document: int = 0  # index of its document in the request
    start: int = 0  # characters of the document this pair holds: [start, end) (passages only)
    end: int = 0

    @property
    def tokens(self) -> int:
        return int(self.ids.shape[1])


def family(files: ModelFiles, inputs: Sequence[str] = ()) -> str:
    """The model's architecture as its config names it (`bert`, `xlm-roberta`, ...)."""
    model_type = files.config.get("model_type")
    if isinstance(model_type, str) and model_type:
        return model_type
    return "bert" if "token_type_ids" in inputs else "unknown"


def position_limit(files: ModelFiles) -> int | None:
    """Most tokens of one pair the model's position table holds, when its configs say."""
    limits = []
    positions = files.config.get("max_position_embeddings")
    if isinstance(positions, int) and positions > 0:
        offset = 0
        if files.config.get("model_type") in _OFFSET_POSITIONS:
            offset = int(files.config.get("pad_token_id", 1)) + 1
        limits.append(positions - offset)
    declared = files.tokenizer_config.get("model_max_length")
    if isinstance(declared, int | float) and 0 < declared < _SANE_LIMIT:
        limits.append(int(declared))
    return min(limits) if limits else None


def configured_activation(files: ModelFiles) -> str | None:
    """The score activation a sentence-transformers CrossEncoder saved with the model, if any."""
    saved = files.config.get("sentence_transformers")
    name = saved.get("activation_fn") if isinstance(saved, Mapping) else None
    name = name or files.config.get("sbert_ce_default_activation_function")
    if not isinstance(name, str):
        return None
    leaf = name.rsplit(".", 1)[-1].lower()
    return {"sigmoid": "sigmoid", "identity": "none", "softmax": "softmax"}.get(leaf)


class CrossEncoder:
    """An ONNX cross-encoder with its tokenizer; thread-safe for concurrent `score_pair` calls.

    `source` is a ModelFiles or a model folder. The graph's own inputs decide what is fed (no
    token_type_ids for XLM-RoBERTa), the tokenizer's post-processor gives the special tokens and
    the pair template, and `activation` (sigmoid, softmax, none; default: the one saved with the
    model, else sigmoid of a single logit and softmax's last class of two or more) makes scores.
    """

    def __init__(
        self,
        source: Path | ModelFiles,
        *,
        max_length: int = 512,
        intra_op_threads: int = 1,
        activation: str | None = None,
    ) -> None:
        files = source if isinstance(source, ModelFiles) else folder_files(Path(source))
        self.files = files
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        available = ort.get_available_providers()
        providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
        self.session = ort.InferenceSession(str(files.onnx), options, providers=providers)
        self._inputs = {i.name for i in self.session.get_inputs()}
        unknown = sorted(self._inputs - set(_FEEDS))
        if "input_ids" not in self._inputs or unknown:
            raise ValueError(
                f"{files.onnx}: a cross-encoder graph takes input_ids (and attention_mask,"
                f" token_type_ids, position_ids); this one takes {sorted(self._inputs)}"
            )
        self.tokenizer = Tokenizer.from_file(str(files.tokenizer))
        # The shipped tokenizer.json pads to 512 and truncates itself; we do both explicitly.
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()
        self.max_length = max_length
        self.position_limit = position_limit(files)
        self.family = family(files, sorted(self._inputs))
        chosen = activation or configured_activation(files) or "auto"
        if chosen not in (*ACTIVATIONS, "auto"):
            raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}, not {chosen!r}")
        self.activation = chosen
        self._special = self.tokenizer.num_special_tokens_to_add(True)
        self.labels = 0  # classes of the head, known after warm_up
        self._feed_mask = "attention_mask" in self._inputs
        self._feed_types = "token_type_ids" in self._inputs
        self._feed_positions = "position_ids" in self._inputs
        first = int(files.config.get("pad_token_id", 1)) + 1 if self.family in _OFFSET_POSITIONS else 0
        self._position_base = np.arange(first, first + max(max_length, 1), dtype=np.int64)[None, :]

    def encode(
        self,
        query: str,
        texts: Sequence[str],
        *,
        truncation: Truncation = Truncation.END,
        max_tokens_per_doc: int | None = None,
        passages: Passages | None = None,
    ) -> list[Pair]:
        """Tokenise every (query, text) pair within the model's limit.

        END cuts the document at the limit (and the query at half the limit if it alone is too
        long); NONE raises InvalidArgument naming the first pair that does not fit.
        `max_tokens_per_doc` cuts each document first, as the caller asked. With `passages`, each
        document becomes one pair per window instead (`Pair.document` says whose), and is never
        too long.
        """
        q = self.tokenizer.encode(query, add_special_tokens=False)
        room = self.max_length - self._special
        if len(q.ids) >= room:
            if truncation is Truncation.NONE:
                raise errors.invalid(
                    "query", f"is {len(q.ids)} tokens; the model takes {room - 1} at most with a document"
                )
            q.truncate(room // 2)
        budget = room - len(q.ids)
        if passages is not None:
            return self._passages(q, texts, budget, passages, max_tokens_per_doc)
        keep = budget if max_tokens_per_doc is None else min(budget, max_tokens_per_doc)
        docs = self._encode_prefixes(texts, keep)
        pairs = []
        for index, doc in enumerate(docs):
            if max_tokens_per_doc is not None and len(doc.ids) > max_tokens_per_doc:
                doc.truncate(max_tokens_per_doc)
            if len(doc.ids) > budget:
                if truncation is Truncation.NONE:
                    raise errors.invalid(
                        f"documents[{index}]",
                        f"query + document is at least {len(doc.ids) + len(q.ids) + self._special} tokens,"
                        f" over the model's {self.max_length}; use truncation END or a shorter document",
                    )
                doc.truncate(budget)
            pairs.append(self._pair(self.tokenizer.post_process(q, doc)))
        return pairs

    def _passages(
        self, q: Encoding, texts: Sequence[str], budget: int, passages: Passages, cut: int | None
    ) -> list[Pair]:
        """One pair per window of each document: `passages.tokens` (at most what the query leaves)
        document tokens, neighbours sharing `stride`; tokenizers' own overflowing windows."""
        window = min(passages.tokens, budget)
        stride = min(passages.stride, window // 2)
        keep = passages.most_tokens(window)
        if cut is not None:
            keep = min(keep, cut)
        pairs = []
        for index, doc in enumerate(self._encode_prefixes(texts, keep)):
            if len(doc.ids) > keep:
                doc.truncate(keep)  # its overflowing is replaced by the windows' below, if any
            pieces = [doc]
            if len(doc.ids) > window:
                doc.truncate(window, stride)
                pieces += doc.overflowing
            for piece in pieces:
                offsets = piece.offsets
                encoding = self.tokenizer.post_process(q, piece)
                pairs.append(
                    Pair(
                        ids=np.asarray([encoding.ids], dtype=np.int64),
                        type_ids=np.asarray([encoding.type_ids], dtype=np.int64),
                        document=index,
                        start=offsets[0][0] if offsets else 0,
                        end=offsets[-1][1] if offsets else 0,
                    )
                )
        return pairs

    def _encode_prefixes(self, texts: Sequence[str], keep: int) -> list[Encoding]:
        """Tokens of each text, enough to tell its first `keep` + 1 tokens exactly.

        A long text is tokenised from a prefix of `(keep + 2) * _MAX_CHARS_PER_TOKEN` characters
        (so a megabyte document costs what 50 KB does). That is exact when the prefix holds more
        than `keep` + 1 tokens and the one at `keep` lies in a word the cut did not split; otherwise
        (long runs of whitespace, say) the whole text is tokenised.
        """
        cap = (keep + 2) * _MAX_CHARS_PER_TOKEN
        docs = self.tokenizer.encode_batch([text[:cap] for text in texts], add_special_tokens=False)
        for index, text in enumerate(texts):
            if len(text) > cap and not _prefix_decides(docs[index], keep):
                docs[index] = self.tokenizer.encode(text, add_special_tokens=False)
        return docs

    def warm_up(self) -> None:
        """Pay for lazy initialisation, and prove the model takes pairs of `max_length` tokens.

        A model whose position table is shorter than `max_length` (e.g. 512 for the default model)
        would fail on the first long document; it fails here, at start-up, instead. Where the
        model's configs state its limit, that is checked instead of scoring a pair past 1,024
        tokens (seconds of CPU for a large model at 8,192).
        """
        if self.position_limit is not None and self.max_length > self.position_limit:
            raise ValueError(
                f"max length {self.max_length} is over the {self.position_limit} positions the model"
                f" has; lower the max length (local_max_length / options.max_length) to what it supports"
            )
        first = self.encode("warm up", ["the first call pays for lazy initialisation"])[0]
        self.score_pair(first)
        width = self.session.run(None, {"input_ids": first.ids, **self._extra_feeds(first)})[0].shape[-1]
        if self.activation == "softmax" and width == 1:
            raise ValueError("activation softmax needs a head of two or more classes; this one has one logit")
        self.labels = int(width)
        if self.position_limit is not None and self.max_length > 1024:
            return
        longest = self.encode("warm up", ["word " * self.max_length])[0]
        try:
            self.score_pair(longest)
        except Exception as exc:
            raise ValueError(
                f"the model cannot score a pair of {longest.tokens} tokens; lower the max length"
                f" (local_max_length / options.max_length) to what it supports: {exc}"
            ) from exc

    @staticmethod
    def _pair(encoding: Encoding) -> Pair:
        return Pair(
            ids=np.asarray([encoding.ids], dtype=np.int64),
            type_ids=np.asarray([encoding.type_ids], dtype=np.int64),
        )

    def _extra_feeds(self, pair: Pair) -> dict[str, np.ndarray]:
        feeds = {}
        if self._feed_mask:
            feeds["attention_mask"] = np.ones_like(pair.ids)
        if self._feed_types:
            feeds["token_type_ids"] = pair.type_ids
        if self._feed_positions:
            feeds["position_ids"] = self._position_base[:, : pair.ids.shape[1]]
        return feeds

    def score_pair(self, pair: Pair) -> float:
        """Relevance: the activation of the model's logits (sigmoid of one logit by default)."""
        feeds = {"input_ids": pair.ids}
        if self._feed_mask:
            feeds["attention_mask"] = np.ones_like(pair.ids)
        if self._feed_types:
            feeds["token_type_ids"] = pair.type_ids
        if self._feed_positions:
            feeds["position_ids"] = self._position_base[:, : pair.ids.shape[1]]
        logits = self.session.run(None, feeds)[0][0]
        activation = self.activation
        if activation == "auto" or (activation == "sigmoid" and logits.shape[-1] == 1):
            if logits.shape[-1] == 1:
                return _sigmoid(float(logits[0]))
            activation = "softmax"
        if activation == "softmax":
            shifted = np.exp(logits - logits.max())
            return float(shifted[-1] / shifted.sum())
        if activation == "sigmoid":
            return _sigmoid(float(logits[-1]))
        return float(logits[-1])


def _sigmoid(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    z = math.exp(x)
    return z / (1.0 + z)


# Word pieces are at most this many characters (BERT's max_input_chars_per_word; a longer word is
# one [UNK]), so `keep` tokens never need more than about keep x 100 characters besides whitespace.
_MAX_CHARS_PER_TOKEN = 100


def _prefix_decides(encoding: Encoding, keep: int) -> bool:
    """Whether tokens 0..keep of a cut text are those of the whole text: all lie in complete words."""
    words = encoding.word_ids
    return len(words) > keep + 1 and words[keep] is not None and words[keep] != words[-1]
