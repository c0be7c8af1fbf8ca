"""A tiny cross-encoder of the XLM-RoBERTa family, built by the tests: the graph (onnx.helper) and
its tokenizer (tokenizers), written as a model folder in the usual layout.

Like an XLM-R export (bge-reranker-v2-m3's): inputs `input_ids` and `attention_mask` only (no
token_type_ids), positions computed in the graph from the ids (cumsum of non-padding + pad id), a
position table of 8,194 rows (8,192 usable), `<s> A </s></s> B </s>` pairs. `reference_logits`
computes the same numbers in numpy, so a test can tell that the right ids and nothing else were fed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from tokenizers import Tokenizer, models, pre_tokenizers, processors

from tests.local.support import WORDS

SPECIALS = ["<s>", "<pad>", "</s>", "<unk>"]  # ids 0-3, XLM-R's
PAD = 1
POSITIONS = 8194
_DIM = 8


def vocabulary() -> dict[str, int]:
    words = [*SPECIALS, *WORDS, *(str(n) for n in range(100))]
    return {word: index for index, word in enumerate(dict.fromkeys(words))}


def weights(labels: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(21)
    return {
        "words": rng.normal(size=(len(vocabulary()), _DIM)).astype(np.float32),
        "positions": rng.normal(scale=0.1, size=(POSITIONS, _DIM)).astype(np.float32),
        "head": rng.normal(size=(_DIM, labels)).astype(np.float32),
    }


def reference_logits(ids: list[int], labels: int) -> np.ndarray:
    """What the graph computes for one unpadded pair."""
    w = weights(labels)
    mask = (np.asarray(ids) != PAD).astype(np.int64)
    positions = np.cumsum(mask) * mask + PAD
    hidden = w["words"][ids] + w["positions"][positions]
    return (hidden.mean(axis=0) @ w["head"]).astype(np.float32)


def _graph(labels: int) -> onnx.ModelProto:
    w = weights(labels)
    nodes = [
        helper.make_node("Constant", [], ["pad"], value=numpy_helper.from_array(np.array(PAD, np.int64))),
        helper.make_node("Equal", ["input_ids", "pad"], ["is_pad"]),
        helper.make_node("Not", ["is_pad"], ["not_pad"]),
        helper.make_node("Cast", ["not_pad"], ["real"], to=TensorProto.INT64),
        helper.make_node("Constant", [], ["axis"], value=numpy_helper.from_array(np.array(1, np.int64))),
        helper.make_node("CumSum", ["real", "axis"], ["count"]),
        helper.make_node("Mul", ["count", "real"], ["counted"]),
        helper.make_node("Add", ["counted", "pad"], ["position_ids"]),
        helper.make_node("Gather", ["words", "input_ids"], ["word_vectors"]),
        helper.make_node("Gather", ["positions", "position_ids"], ["position_vectors"]),
        helper.make_node("Add", ["word_vectors", "position_vectors"], ["hidden"]),
        # attention_mask is taken, as an export's is, and used: padding would not count.
        helper.make_node("Cast", ["attention_mask"], ["mask_f"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["mask_f", "minus_one"], ["mask_3d"]),
        helper.make_node("Mul", ["hidden", "mask_3d"], ["masked"]),
        helper.make_node("ReduceSum", ["masked", "axes"], ["summed"], keepdims=0),
        helper.make_node("ReduceSum", ["mask_f", "axes"], ["tokens"], keepdims=1),
        helper.make_node("Div", ["summed", "tokens"], ["pooled"]),
        helper.make_node("MatMul", ["pooled", "head"], ["logits"]),
    ]
    initializers = [
        numpy_helper.from_array(w["words"], "words"),
        numpy_helper.from_array(w["positions"], "positions"),
        numpy_helper.from_array(w["head"], "head"),
        numpy_helper.from_array(np.array([-1], np.int64), "minus_one"),
        numpy_helper.from_array(np.array([1], np.int64), "axes"),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny-xlm-roberta",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "sequence"]),
        ],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", labels])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def tokenizer() -> Tokenizer:
    built = Tokenizer(models.WordLevel(vocabulary(), unk_token="<unk>"))
    built.pre_tokenizer = pre_tokenizers.Whitespace()
    built.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    built.add_special_tokens(SPECIALS)
    return built


def write_model(folder: Path, *, labels: int = 2, config: dict[str, Any] | None = None) -> Path:
    """The tiny XLM-R cross-encoder as a model folder (onnx/model.onnx + tokenizer + configs)."""
    (folder / "onnx").mkdir(parents=True, exist_ok=True)
    onnx.save(_graph(labels), str(folder / "onnx" / "model.onnx"))
    tokenizer().save(str(folder / "tokenizer.json"))
    settings = {"model_type": "xlm-roberta", "max_position_embeddings": POSITIONS, "pad_token_id": PAD}
    settings["num_labels"] = labels
    (folder / "config.json").write_text(json.dumps(settings | (config or {})))
    (folder / "tokenizer_config.json").write_text(json.dumps({"model_max_length": POSITIONS - 2}))
    return folder


def write_export(folder: Path, *, labels: int = 1) -> Path:
    """The tiny model in the folder layout `optimum-cli export onnx` (+ `onnxruntime quantize`)
    writes, as the README shows it for bge-reranker-v2-m3: `model.onnx` with its weights in
    `model.onnx_data` (an export over 2 GB), `model_quantized.onnx` beside it (here the same graph
    with its weights inline, standing in for the int8 one), the tokenizer and configs at the top, and
    files the loader does not read (`sentencepiece.bpe.model`, `special_tokens_map.json`)."""
    folder.mkdir(parents=True, exist_ok=True)
    graph = _graph(labels)
    onnx.save(graph, str(folder / "model_quantized.onnx"))
    onnx.save_model(
        graph,
        str(folder / "model.onnx"),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="model.onnx_data",
        size_threshold=1024,  # small tensors inline, as exports keep them (shape inference reads them)
    )
    tokenizer().save(str(folder / "tokenizer.json"))
    settings = {"model_type": "xlm-roberta", "max_position_embeddings": POSITIONS, "pad_token_id": PAD}
    (folder / "config.json").write_text(json.dumps(settings | {"num_labels": labels}))
    (folder / "tokenizer_config.json").write_text(json.dumps({"model_max_length": POSITIONS - 2}))
    (folder / "sentencepiece.bpe.model").write_bytes(b"not read by rerankd")
    (folder / "special_tokens_map.json").write_text("{}")
    return folder
