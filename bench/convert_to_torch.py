"""Turn the embedded int8 ONNX cross-encoder into a PyTorch BertForSequenceClassification checkpoint.

The benchmark's sentence-transformers baseline needs the same weights as rerankd's model, and no
package ships this cross-encoder in PyTorch format (the machines cannot reach a model hub). So:
read the ONNX graph, dequantise every int8 tensor ((q - zero_point) * scale), name it as
transformers names BERT's parameters, and write config.json + model.safetensors + the tokenizer
files into a folder that `sentence_transformers.CrossEncoder(folder)` loads offline.

Names: the quantised MatMul weights are anonymous (`onnx::MatMul_1662_quantized`); the module they
belong to is read from the path of the node that consumes their product
(`/bert/encoder/layer.0/attention/self/query/MatMul_output_0` -> `...layer.0.attention.self.query`).
ONNX MatMul weights are [in, out]; torch Linear weights are [out, in].

    .venv/bin/python bench/convert_to_torch.py [--model-dir DIR] --out build/bench/torch-model
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "service"))

from rerankd.local.files import resolve_model_dir  # noqa: E402

# The default model, cross-encoder/ms-marco-MiniLM-L-12-v2, as the ONNX graph shows it.
CONFIG = {
    "architectures": ["BertForSequenceClassification"],
    "model_type": "bert",
    "vocab_size": 30522,
    "hidden_size": 384,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 1536,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1,
    "attention_probs_dropout_prob": 0.1,
    "max_position_embeddings": 512,
    "type_vocab_size": 2,
    "initializer_range": 0.02,
    "layer_norm_eps": 1e-12,
    "pad_token_id": 0,
    "num_labels": 1,
    "id2label": {"0": "LABEL_0"},
    "label2id": {"LABEL_0": 0},
    "sentence_transformers": {"activation_fn": "torch.nn.modules.activation.Sigmoid"},
}
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")


def dequantised_weights(model_path: Path) -> dict[str, np.ndarray]:
    """Every parameter of the ONNX graph as float32, under transformers' BERT names."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(model_path)).graph
    init = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    def dequant(base: str) -> np.ndarray:
        q = init[f"{base}_quantized"].astype(np.float32)
        return (q - init[f"{base}_zero_point"].astype(np.float32)) * init[f"{base}_scale"].astype(np.float32)

    weights: dict[str, np.ndarray] = {}
    for name, value in init.items():  # biases, LayerNorms: stored in float32 under their own names
        if value.dtype == np.float32 and value.ndim == 1 and name.startswith(("bert.", "classifier.")):
            weights[name] = value
    for table in ("word_embeddings", "position_embeddings", "token_type_embeddings"):
        weights[f"bert.embeddings.{table}.weight"] = dequant(f"bert.embeddings.{table}.weight")
    for node in graph.node:
        if node.op_type != "MatMulInteger":
            continue
        quantised = node.input[1]
        base = quantised.removesuffix("_quantized")
        if base.endswith(".weight"):  # pooler and classifier keep their names
            module = base.removesuffix(".weight")
        else:  # MatMulInteger -> Cast -> Mul(scale): the Mul's output carries the module path
            (cast,) = consumers[node.output[0]]
            (scale,) = consumers[cast.output[0]]
            module = scale.output[0].strip("/").rsplit("/", 1)[0].replace("/", ".")
        weights[f"{module}.weight"] = np.ascontiguousarray(dequant(base).T)
    return weights


def convert(model_dir: Path | None, out: Path) -> Path:
    """Write the checkpoint to `out` (created); returns it."""
    import torch
    from safetensors.torch import save_file
    from transformers import BertConfig, BertForSequenceClassification

    directory, _ = resolve_model_dir(model_dir)
    weights = dequantised_weights(directory / "model.onnx")
    config = BertConfig(**{k: v for k, v in CONFIG.items() if k != "sentence_transformers"})
    model = BertForSequenceClassification(config)
    expected = {k for k in model.state_dict() if not k.endswith("position_ids")}
    missing, extra = expected - weights.keys(), weights.keys() - expected
    if missing or extra:
        raise SystemExit(
            f"weights do not fit BertForSequenceClassification: missing {missing}, extra {extra}"
        )
    for name, value in weights.items():
        if tuple(model.state_dict()[name].shape) != value.shape:
            raise SystemExit(f"{name}: ONNX shape {value.shape} != {tuple(model.state_dict()[name].shape)}")
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: torch.from_numpy(np.array(v)) for k, v in weights.items()}, str(out / "model.safetensors"))
    (out / "config.json").write_text(json.dumps(CONFIG, indent=2))
    for name in TOKENIZER_FILES:
        if (directory / name).is_file():
            shutil.copy(directory / name, out / name)
    tokenizer_config = out / "tokenizer_config.json"
    settings = json.loads(tokenizer_config.read_text()) if tokenizer_config.is_file() else {}
    settings["model_max_length"] = 512
    tokenizer_config.write_text(json.dumps(settings, indent=2))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=None, help="default: the bundled model")
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "bench" / "torch-model")
    args = parser.parse_args()
    print(convert(args.model_dir, args.out))


if __name__ == "__main__":
    main()
