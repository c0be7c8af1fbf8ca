"""A local model named by its hub repo id: fetched once into a cache, verified, then used offline.

`fetch("BAAI/bge-reranker-v2-m3", revision="main", cache_dir=...)`:

1. online (the hub at `HF_ENDPOINT`, default huggingface.co): the repo's file list with sizes and
   hashes (`model_info(files_metadata=True)`), the ONNX file chosen from it (files.choose_onnx),
   the files it needs downloaded with huggingface_hub into its standard cache layout, pinned to the
   revision's commit, each checked against the hub's size and sha256 (LFS) or git blob id;
   what was checked is recorded in `<cache>/rerankd/<repo>/<revision>.json`;
2. offline (`HF_HUB_OFFLINE=1`, or the hub unreachable): that record names the commit and files, and
   each cached file must still have the recorded size and sha256.

A file that does not match (a tampered or truncated cache) is refused, never re-fetched silently.
Every failure is a ModelFilesError with a one-line message.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import logging
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from rerankd.local.files import ModelFiles, ModelFilesError, choose_onnx, companion, file_digests, model_files

_LOG = logging.getLogger(__name__)
_METADATA_TIMEOUT_S = 15.0


def _http_errors() -> tuple[type[BaseException], ...]:
    """huggingface_hub 2.x speaks httpx2, 1.x httpx: a connection failure is either one's HTTPError."""
    found = (importlib.import_module(n) for n in ("httpx2", "httpx") if importlib.util.find_spec(n))
    return tuple(module.HTTPError for module in found)


_COMPANIONS = ("tokenizer.json", "config.json", "tokenizer_config.json")


def default_cache_dir() -> Path:
    """huggingface_hub's cache (HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub)."""
    from huggingface_hub import constants

    return Path(os.environ.get("HF_HUB_CACHE") or constants.HF_HUB_CACHE).expanduser()


def offline() -> bool:
    """HF_HUB_OFFLINE as set now (huggingface_hub reads it once, at import)."""
    from huggingface_hub import constants

    value = os.environ.get("HF_HUB_OFFLINE", "")
    return constants.HF_HUB_OFFLINE or value.strip().upper() in ("1", "ON", "YES", "TRUE")


def endpoint() -> str:
    """HF_ENDPOINT as set now, else the hub's default."""
    from huggingface_hub import constants

    return (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def fetch(
    repo_id: str,
    *,
    revision: str = "main",
    cache_dir: Path | None = None,
    onnx_file: str | None = None,
    quantized: str = "auto",
    cuda: bool = False,
) -> ModelFiles:
    """The verified files of `repo_id` at `revision`: from the hub once, from the cache after."""
    # Imported here: a server on the bundled model never pays for huggingface_hub (0.3 s).
    from huggingface_hub import HfApi, hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        HfHubHTTPError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )
    from huggingface_hub.utils import disable_progress_bars

    cache = (cache_dir or default_cache_dir()).expanduser()
    where = f"{repo_id}@{revision}"
    if offline():
        return _cached(repo_id, revision, cache, f"HF_HUB_OFFLINE is set and {cache} has no verified copy")
    disable_progress_bars()
    api = HfApi(endpoint=endpoint())
    http_errors = _http_errors()
    unreachable: tuple[type[BaseException], ...] = (*http_errors, OSError, OfflineModeIsEnabled)
    failed_download: tuple[type[BaseException], ...] = (*http_errors, OSError, EntryNotFoundError)
    try:
        info = api.model_info(repo_id, revision=revision, files_metadata=True, timeout=_METADATA_TIMEOUT_S)
    except (RepositoryNotFoundError, GatedRepoError) as exc:
        raise ModelFilesError(
            f"model {repo_id} not found on {endpoint()} (or not public): {_short(exc)}"
        ) from exc
    except RevisionNotFoundError as exc:
        raise ModelFilesError(f"model {repo_id} has no revision {revision!r} on {endpoint()}") from exc
    except unreachable as exc:
        if isinstance(exc, HfHubHTTPError) and not _unreachable(exc):
            raise ModelFilesError(f"model {where}: the hub at {endpoint()} answered {_short(exc)}") from exc
        reason = f"the hub at {endpoint()} is unreachable ({_short(exc)}) and {cache} has no verified copy"
        files = _cached(repo_id, revision, cache, reason)
        _LOG.warning("the hub at %s is unreachable (%s): %s from the cache", endpoint(), _short(exc), where)
        return files
    siblings = {s.rfilename: s for s in info.siblings or ()}
    onnx = choose_onnx(siblings, onnx_file=onnx_file, quantized=quantized, where=f"model {where}", cuda=cuda)
    wanted = [onnx, *_external_data(onnx, siblings)]
    wanted += [c for name in _COMPANIONS if (c := companion(onnx, name, siblings.__contains__))]
    commit = info.sha or revision
    records: dict[str, dict[str, Any]] = {}
    for name in dict.fromkeys(wanted):
        try:
            path = Path(hf_hub_download(repo_id, name, revision=commit, cache_dir=cache, endpoint=endpoint()))
        except failed_download as exc:
            raise ModelFilesError(f"model {where}: could not download {name}: {_short(exc)}") from exc
        records[name] = _check_against_hub(path, siblings[name], where)
    _write_record(cache, repo_id, revision, {"commit": commit, "onnx": onnx, "files": records})
    return _files(repo_id, commit, cache, onnx, records)


def _cached(repo_id: str, revision: str, cache: Path, reason: str) -> ModelFiles:
    """The copy recorded for `repo_id@revision`, each file checked again; `reason` when none."""
    from huggingface_hub import try_to_load_from_cache

    record_path = _record_path(cache, repo_id, revision)
    try:
        record = json.loads(record_path.read_text(encoding="utf-8"))
        commit, onnx, records = record["commit"], record["onnx"], record["files"]
    except (OSError, ValueError, KeyError, TypeError):
        raise ModelFilesError(f"model {repo_id}@{revision}: {reason}") from None
    for name, expected in records.items():
        found = try_to_load_from_cache(repo_id, name, cache_dir=cache, revision=commit)
        if not isinstance(found, str):
            raise ModelFilesError(f"model {repo_id}@{revision}: {name} is missing from {cache}; {reason}")
        _check_recorded(Path(found), expected, f"{repo_id}@{commit}")
    return _files(repo_id, commit, cache, onnx, records)


def _files(repo_id: str, commit: str, cache: Path, onnx: str, records: dict[str, Any]) -> ModelFiles:
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, onnx, cache_dir=cache, revision=commit)
    if not isinstance(found, str):  # pragma: no cover - just downloaded or checked
        raise ModelFilesError(f"model {repo_id}@{commit}: {onnx} is missing from {cache}")
    root = Path(found).parents[len(Path(onnx).parts) - 1]  # the snapshot folder of that commit
    return model_files(root, onnx, f"hub {repo_id}@{commit}")


def _external_data(onnx: str, siblings: Iterable[str]) -> list[str]:
    """Files holding an ONNX graph's external weights (`model.onnx_data`, `model.onnx.data`, ...)."""
    return sorted(name for name in siblings if name != onnx and name.startswith(onnx))


def _check_against_hub(path: Path, sibling: Any, where: str) -> dict[str, Any]:
    """Size and hash of a downloaded (or already cached) file against the hub's metadata; the
    record to keep."""
    size = path.stat().st_size
    sha256, blob_id = file_digests(path)
    lfs = sibling.lfs
    expected_size = lfs.size if lfs else sibling.size
    found = None
    if expected_size is not None and size != expected_size:
        found = f"is {size} bytes, the hub says {expected_size}"
    elif lfs is not None and lfs.sha256 != sha256:
        found = f"has sha256 {sha256}, the hub says {lfs.sha256}"
    elif lfs is None and sibling.blob_id and sibling.blob_id != blob_id:
        found = f"has git blob id {blob_id}, the hub says {sibling.blob_id}"
    if found:
        raise ModelFilesError(
            f"model {where}: {sibling.rfilename} ({path}) {found}; remove it from the cache to fetch it again"
        )
    return {"size": size, "sha256": sha256}


def _check_recorded(path: Path, expected: dict[str, Any], where: str) -> None:
    size = path.stat().st_size
    if size != expected["size"]:
        raise ModelFilesError(
            f"cached {path} of model {where} is {size} bytes, not the {expected['size']} verified when"
            " it was fetched; remove it to fetch it again"
        )
    sha256 = file_digests(path)[0]
    if sha256 != expected["sha256"]:
        raise ModelFilesError(
            f"cached {path} of model {where} has sha256 {sha256}, not the {expected['sha256']} verified"
            " when it was fetched; remove it to fetch it again"
        )


def _record_path(cache: Path, repo_id: str, revision: str) -> Path:
    folder = "models--" + repo_id.replace("/", "--")
    return cache / "rerankd" / folder / (revision.replace("/", "--") + ".json")


def _write_record(cache: Path, repo_id: str, revision: str, record: dict[str, Any]) -> None:
    path = _record_path(cache, repo_id, revision)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "repo_id": repo_id,
        "revision": revision,
        "endpoint": endpoint(),
        "fetched_at": time.time(),
        **record,
    }
    partial = path.with_suffix(f".{os.getpid()}.tmp")
    partial.write_text(json.dumps(record, indent=1, sort_keys=True), encoding="utf-8")
    partial.replace(path)


def _unreachable(exc: Any) -> bool:
    """A hub error that means "try the cache": no answer, or the hub itself failing (5xx)."""
    status = exc.response.status_code if exc.response is not None else None
    return status is None or status >= 500 or status == 429


def _short(exc: BaseException) -> str:
    """The first line of an exception's message (huggingface_hub's are several)."""
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]


def main(argv: list[str] | None = None) -> int:
    """`python -m rerankd.local.hub REPO [--revision R] [--cache-dir D]`: fetch and verify a model
    now (e.g. while building an image), so that `rerankd serve` starts offline later."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="python -m rerankd.local.hub", description=main.__doc__)
    parser.add_argument("repo_id", help="hub repo id, e.g. cross-encoder/ms-marco-MiniLM-L-6-v2")
    parser.add_argument("--revision", default="main", help="branch, tag or commit (default main)")
    parser.add_argument("--cache-dir", type=Path, help="cache folder (default: huggingface_hub's)")
    parser.add_argument("--onnx-file", help="the ONNX file to use (default: chosen from the layouts)")
    parser.add_argument("--quantized", default="auto", help="auto, true or false (default auto)")
    args = parser.parse_args(argv)
    try:
        files = fetch(
            args.repo_id,
            revision=args.revision,
            cache_dir=args.cache_dir,
            onnx_file=args.onnx_file,
            quantized=args.quantized,
        )
    except ModelFilesError as exc:
        print(f"rerankd: {exc}", file=sys.stderr)
        return 2
    print(f"{files.source}: {files.onnx}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
