"""Hub models against a fake hub on loopback: `rerankd serve` with a repo id downloads, verifies and
serves; with the hub gone it serves from the cache; a tampered cache is refused with one line
(exit 2, nothing bound). Also: the ONNX layouts, offline mode, missing repos and revisions.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from rerankd.local import files as model_files
from rerankd.local import hub
from rerankd.local.files import BUNDLED_SHA256, ModelFilesError, bundled_model_dir, choose_onnx

from tests.examples import FRANCE_BEST, FRANCE_DOCS, FRANCE_QUERY
from tests.local.fakehub import Repo, fake_hub
from tests.support import ROOT, free_port, server_process

REPO_ID = "cross-encoder/ms-marco-MiniLM-L-12-v2"


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    """The bundled model's files as a hub repo in sentence-transformers' layout, with a config."""
    config = tmp_path / "config.json"
    config.write_text(
        json.dumps(
            {
                "model_type": "bert",
                "max_position_embeddings": 512,
                "sentence_transformers": {"activation_fn": "torch.nn.modules.activation.Sigmoid"},
            }
        )
    )
    bundled = bundled_model_dir()
    return Repo(
        {
            "onnx/model.onnx": bundled / "model.onnx",
            "tokenizer.json": bundled / "tokenizer.json",
            "tokenizer_config.json": bundled / "tokenizer_config.json",
            "config.json": config,
            "README.md": bundled / "special_tokens_map.json",  # not needed: never downloaded
        }
    )


@pytest.fixture
def hub_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """No offline flag, a private HF_HOME; yields the cache folder."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    yield tmp_path / "cache"


def _serve_env(url: str, cache: Path, tmp_path: Path) -> dict[str, str]:
    """`rerankd serve` of the hub model through the default provider."""
    return {
        "HF_ENDPOINT": url,
        "HF_HOME": str(tmp_path / "hf-home"),
        "RERANKD_LOCAL_MODEL": REPO_ID,
        "RERANKD_LOCAL_CACHE_DIR": str(cache),
        "RERANKD_LOCAL_THREADS": "1",
    }


def _rerank(address: str) -> list[dict[str, object]]:
    docs = [arg for doc in FRANCE_DOCS for arg in ("--doc", doc)]
    out = subprocess.run(
        [sys.executable, "-m", "rerankd.cli", "rerank", FRANCE_QUERY, *docs, "--json", "--target", address],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)["results"]


def test_serve_downloads_verifies_serves_then_serves_from_the_cache_and_refuses_a_tampered_one(
    repo: Repo, hub_env: Path, tmp_path: Path
) -> None:
    cache = hub_env
    with fake_hub({REPO_ID: repo}) as fake:
        with server_process(env=_serve_env(fake.url, cache, tmp_path), tmp_path=tmp_path) as server:
            assert _rerank(server.address)[0]["index"] == FRANCE_BEST
            models = _cli("models", "--target", server.address)
            assert "ms-marco-MiniLM-L-12-v2" in models.stdout
        downloads = {r.rsplit("/", 1)[-1] for r in fake.requests if r.startswith("GET") and "/resolve/" in r}
        assert downloads == {"model.onnx", "tokenizer.json", "tokenizer_config.json", "config.json"}
    record = json.loads(next((cache / "rerankd").rglob("main.json")).read_text())
    assert (record["commit"], record["onnx"]) == (repo.commit, "onnx/model.onnx")
    assert record["files"]["onnx/model.onnx"]["sha256"] == BUNDLED_SHA256["model.onnx"]

    # The hub is gone: the same start serves from the cache.
    with server_process(env=_serve_env(fake.url, cache, tmp_path), tmp_path=tmp_path) as server:
        assert _rerank(server.address)[0]["index"] == FRANCE_BEST
        assert "from the cache" in server.log()

    # A cached file changed on disk: refused with one line, exit 2, no port bound.
    blobs = cache / f"models--{REPO_ID.replace('/', '--')}" / "blobs"
    config = next(p for p in blobs.iterdir() if b'"max_position_embeddings"' in p.read_bytes())
    config.write_bytes(config.read_bytes().replace(b"512", b"513"))
    port = free_port()
    env = {**_serve_env(fake.url, cache, tmp_path), "RERANKD_METRICS_PORT": str(free_port())}
    refused = _cli("serve", "--host", "127.0.0.1", "--port", str(port), env=env)
    assert refused.returncode == 2, refused.stderr
    lines = [line for line in refused.stderr.splitlines() if not line.startswith("{")]  # not log lines
    assert len(lines) == 1 and lines[0].startswith("rerankd serve: cached "), refused.stderr
    assert "sha256" in lines[0] and "verified when it was fetched" in lines[0]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", port))  # free: the refused server bound nothing


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("RERANKD_", "HF_"))}
    return subprocess.run(
        [sys.executable, "-m", "rerankd.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**clean, **(env or {})},
    )


def _rerank(address: str) -> list[dict[str, object]]:
    docs = [arg for doc in FRANCE_DOCS for arg in ("--doc", doc)]
    out = _cli("rerank", FRANCE_QUERY, *docs, "--json", "--target", address)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)["results"]


def test_fetch_then_offline_then_missing_revision_repo_and_hub(
    repo: Repo, hub_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = hub_env
    with fake_hub({REPO_ID: repo}) as fake:
        monkeypatch.setenv("HF_ENDPOINT", fake.url)
        fetched = hub.fetch(REPO_ID, cache_dir=cache)
        assert fetched.source == f"hub {REPO_ID}@{repo.commit}"
        assert fetched.config["model_type"] == "bert" and fetched.tokenizer_config["model_max_length"] == 512
        downloads = sum("GET" in r and "/resolve/" in r for r in fake.requests)
        assert hub.fetch(REPO_ID, cache_dir=cache).onnx == fetched.onnx
        assert sum("GET" in r and "/resolve/" in r for r in fake.requests) == downloads  # cached
        with pytest.raises(ModelFilesError, match="not found on"):
            hub.fetch("nobody/nothing", cache_dir=cache)
        with pytest.raises(ModelFilesError, match="has no revision 'v9'"):
            hub.fetch(REPO_ID, revision="v9", cache_dir=cache)
        with pytest.raises(ModelFilesError, match=r"has no onnx/other\.onnx"):
            hub.fetch(REPO_ID, onnx_file="onnx/other.onnx", cache_dir=cache)
        asked = len(fake.requests)
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        assert hub.fetch(REPO_ID, cache_dir=cache).onnx == fetched.onnx
        assert len(fake.requests) == asked  # offline: not one request
        with pytest.raises(ModelFilesError, match="HF_HUB_OFFLINE is set") as caught:
            hub.fetch(REPO_ID, revision="v2", cache_dir=cache)
        assert "\n" not in str(caught.value)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    with pytest.raises(ModelFilesError, match="unreachable") as caught:
        hub.fetch("someone/else", cache_dir=cache)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("lie", "message"),
    [
        ({"size": 5}, r"tokenizer.json \(.*\) is \d+ bytes, the hub says 5"),
        ({"blobId": "0" * 40}, r"tokenizer.json \(.*\) has git blob id .*, the hub says 0000"),
        (
            {"lfs": {"size": 711661, "sha256": "0" * 64, "pointerSize": 134}},
            "has sha256 .*, the hub says 0000",
        ),
    ],
    ids=["size", "git-blob-id", "lfs-sha256"],
)
def test_a_download_that_does_not_match_the_hub_metadata_is_refused(
    repo: Repo, hub_env: Path, monkeypatch: pytest.MonkeyPatch, lie: dict[str, object], message: str
) -> None:
    repo.lies = {"tokenizer.json": lie}
    with fake_hub({REPO_ID: repo}) as fake:
        monkeypatch.setenv("HF_ENDPOINT", fake.url)
        with pytest.raises(ModelFilesError, match=message):
            hub.fetch(REPO_ID, cache_dir=hub_env)
    assert not list((hub_env / "rerankd").rglob("*.json"))  # nothing recorded as verified


@pytest.mark.parametrize(
    ("names", "features", "quantized", "cuda", "chosen"),
    [
        (["model.onnx"], ["avx2"], "auto", False, "model.onnx"),
        (
            ["onnx/model.onnx", "onnx/model_quint8_avx2.onnx"],
            ["avx2"],
            "auto",
            False,
            "onnx/model_quint8_avx2.onnx",
        ),
        (["onnx/model.onnx", "onnx/model_quint8_avx2.onnx"], ["avx2"], "auto", True, "onnx/model.onnx"),
        (["onnx/model.onnx", "onnx/model_quint8_avx2.onnx"], ["avx2"], "false", False, "onnx/model.onnx"),
        (
            ["onnx/model.onnx", "onnx/model_qint8_avx512_vnni.onnx", "onnx/model_quint8_avx2.onnx"],
            ["avx512_vnni", "avx512f", "avx2"],
            "auto",
            False,
            "onnx/model_qint8_avx512_vnni.onnx",
        ),
        (["onnx/model.onnx", "onnx/model_qint8_arm64.onnx"], ["avx2"], "auto", False, "onnx/model.onnx"),
        (["onnx/model.onnx", "onnx/model_quantized.onnx"], [], "true", False, "onnx/model_quantized.onnx"),
    ],
)
def test_the_onnx_file_is_chosen_from_the_usual_layouts(
    monkeypatch: pytest.MonkeyPatch,
    names: list[str],
    features: list[str],
    quantized: str,
    cuda: bool,
    chosen: str,
) -> None:
    monkeypatch.setattr(model_files, "cpu_features", lambda: features)
    assert choose_onnx(names, onnx_file=None, quantized=quantized, where="repo", cuda=cuda) == chosen


def test_no_onnx_file_is_one_line_naming_what_is_there() -> None:
    with pytest.raises(ModelFilesError, match=r"ONNX files there: onnx/decoder\.onnx; name one") as caught:
        choose_onnx(["onnx/decoder.onnx", "pytorch_model.bin"], onnx_file=None, where="model x/y@main")
    assert "\n" not in str(caught.value)


def test_a_changed_cache_file_is_refused_with_the_hub_up_too(
    repo: Repo, hub_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with fake_hub({REPO_ID: repo}) as fake:
        monkeypatch.setenv("HF_ENDPOINT", fake.url)
        fetched = hub.fetch(REPO_ID, cache_dir=hub_env)
        fetched.tokenizer.write_bytes(fetched.tokenizer.read_bytes() + b" ")  # the cached blob, via its link
        with pytest.raises(
            ModelFilesError, match=r"tokenizer\.json \(.*\) is \d+ bytes, the hub says"
        ) as caught:
            hub.fetch(REPO_ID, cache_dir=hub_env)
        assert "\n" not in str(caught.value) and "remove it" in str(caught.value)


def test_a_model_fetched_ahead_by_the_module_command_serves_offline(
    repo: Repo, hub_env: Path, tmp_path: Path
) -> None:
    with fake_hub({REPO_ID: repo}) as fake:
        env = {"HF_ENDPOINT": fake.url, "HF_HOME": str(tmp_path / "hf-home")}
        fetched = subprocess.run(
            [sys.executable, "-m", "rerankd.local.hub", REPO_ID, "--cache-dir", str(hub_env)],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, **env},
        )
        assert fetched.returncode == 0, fetched.stderr
        assert fetched.stdout.startswith(f"hub {REPO_ID}@{repo.commit}: ")
    missing = subprocess.run(
        [sys.executable, "-m", "rerankd.local.hub", "nobody/nothing", "--cache-dir", str(hub_env)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **env, "HF_HUB_OFFLINE": "1"},
    )
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1
    offline = {**_serve_env(fake.url, hub_env, tmp_path), "HF_HUB_OFFLINE": "1"}
    with server_process(env=offline, tmp_path=tmp_path) as server:
        assert _rerank(server.address)[0]["index"] == FRANCE_BEST
