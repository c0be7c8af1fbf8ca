"""The cross-encoder itself: tokenise query + document pairs and score them with ONNX Runtime.

Each pair is run alone (batch of one). On CPU a pair's cost is linear in its tokens and batching
barely helps, while scoring alone means no padding is computed and, with the int8 model (whose
activation scales are computed per batch), a pair's score never depends on what else is being
scored: the same request always gets the same scores. Parallelism comes from running pairs on
several threads over one shared session.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Encoding, Tokenizer

from rerankd import errors
from rerankd.domain import Truncation


@dataclass(frozen=True, slots=True)
class Pair:
    """A tokenised query + document pair, ready to score."""

    ids: np.ndarray  # int64 [1, n]
    type_ids: np.ndarray  # int64 [1, n]

    @property
    def tokens(self) -> int:
        return int(self.ids.shape[1])


class CrossEncoder:
    """An ONNX cross-encoder with its tokenizer; thread-safe for concurrent `score_pair` calls."""

    def __init__(self, model_dir: Path, *, max_length: int = 512, intra_op_threads: int = 1) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        available = ort.get_available_providers()
        providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
        self.session = ort.InferenceSession(str(model_dir / "model.onnx"), options, providers=providers)
        self._inputs = {i.name for i in self.session.get_inputs()}
        self.tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        # The shipped tokenizer.json pads to 512 and truncates itself; we do both explicitly.
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()
        self.max_length = max_length
        self._special = self.tokenizer.num_special_tokens_to_add(True)

    def encode(
        self,
        query: str,
        texts: Sequence[str],
        *,
        truncation: Truncation = Truncation.END,
        max_tokens_per_doc: int | None = None,
    ) -> list[Pair]:
        """Tokenise every (query, text) pair within the model's limit.

        END cuts the document at the limit (and the query at half the limit if it alone is too
        long); NONE raises InvalidArgument naming the first pair that does not fit.
        `max_tokens_per_doc` cuts each document first, as the caller asked.
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
        docs = self.tokenizer.encode_batch(list(texts), add_special_tokens=False)
        pairs = []
        for index, doc in enumerate(docs):
            if max_tokens_per_doc is not None and len(doc.ids) > max_tokens_per_doc:
                doc.truncate(max_tokens_per_doc)
            if len(doc.ids) > budget:
                if truncation is Truncation.NONE:
                    raise errors.invalid(
                        f"documents[{index}]",
                        f"query + document is {len(doc.ids) + len(q.ids) + self._special} tokens, over the "
                        f"model's {self.max_length}; use truncation END or a shorter document",
                    )
                doc.truncate(budget)
            pairs.append(self._pair(self.tokenizer.post_process(q, doc)))
        return pairs

    @staticmethod
    def _pair(encoding: Encoding) -> Pair:
        return Pair(
            ids=np.asarray([encoding.ids], dtype=np.int64),
            type_ids=np.asarray([encoding.type_ids], dtype=np.int64),
        )

    def score_pair(self, pair: Pair) -> float:
        """Relevance in [0, 1]: the sigmoid of the model's logit (softmax's last class for 2+)."""
        feeds = {"input_ids": pair.ids, "attention_mask": np.ones_like(pair.ids)}
        if "token_type_ids" in self._inputs:
            feeds["token_type_ids"] = pair.type_ids
        logits = self.session.run(None, feeds)[0][0]
        if logits.shape[-1] == 1:
            return _sigmoid(float(logits[0]))
        shifted = np.exp(logits - logits.max())
        return float(shifted[-1] / shifted.sum())


def _sigmoid(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    z = math.exp(x)
    return z / (1.0 + z)
