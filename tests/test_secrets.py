"""Secret hygiene: a canary key set in the environment appears in no log line, error, answer or repr.

The key reaches the real server process through an env var (as in a pod) and is sent to a loopback
fake Cohere that echoes it back in its error bodies (JSON and plain text, every status class); the
calls go through gRPC (unary, stream, batch) and HTTP, with fallbacks so failed attempts show up in
answers too. The test first proves the key was in play (the fake saw it), then that it is nowhere
the callers or the logs can see. Crash traces and reprs are checked as well.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
import yaml
from pydantic import SecretStr
from rerankd import errors, logs
from rerankd.config import ProviderConfig, Settings
from rerankd.domain import Document
from rerankd.providers.http import HttpClient, HttpProvider
from rerankd.providers.passages import PassageProvider
from rerankd.providers.registry import ProviderContext, create_provider
from rerankd.v1 import rerank_pb2 as pb
from rerankd.v1 import rerank_pb2_grpc as pb_grpc

from tests.fakes.base import Malformed, Status
from tests.fakes.cohere import CohereFake
from tests.support import ROOT, free_port, server_process

# Shaped like no known key format, so only the registry of secret values can catch it.
CANARY = "canary7Hq2Zk9Lw3Rt8Yp4Xv6Nb1Md5Fs0"
ENV = "RERANKD_TEST_CANARY_KEY"


def _echoing_faults() -> list[Any]:
    return [
        Status(500, {"message": f"upstream failure for key {CANARY}"}),
        Status(503, f"<html>gateway saw {CANARY}</html>".encode()),
        Status(429, {"message": f"quota exceeded for {CANARY}"}, {"Retry-After": "0"}),
        Status(401, {"message": f"invalid api token {CANARY}"}),
        Status(400, {"message": f"bad request with {CANARY} in it"}),
        Status(422, {"detail": [{"loc": ["body"], "msg": f"field {CANARY}"}]}),
        Malformed(),
    ]


def _config(tmp_path: Path, bad_url: str, good_url: str) -> Path:
    provider = {"kind": "cohere", "api_key_env": ENV, "models": ["rerank-v3.5"]}
    config = {
        "providers": {
            # no breaker: every call must reach the echoing fake
            "bad": {**provider, "base_url": bad_url, "breaker": {"enabled": False}},
            "good": {**provider, "base_url": good_url},
        },
        "routes": {
            "default": {
                "targets": [{"provider": "bad", "priority": 0}, {"provider": "good", "priority": 1}],
                "retry": {"max_attempts": 1},
            },
            "bad-only": {"targets": [{"provider": "bad"}], "retry": {"max_attempts": 1}},
        },
    }
    path = tmp_path / "rerankd.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _request(model: str) -> pb.RerankRequest:
    return pb.RerankRequest(
        model=model, query="apple", documents=[pb.Document(text="an apple"), pb.Document(text="a pear")]
    )


def _grpc_calls(address: str, fake: CohereFake) -> Iterator[str]:
    """Every call shape against the echoing provider; yields all that a caller gets to see."""
    with grpc.insecure_channel(address) as channel:
        stub = pb_grpc.RerankServiceStub(channel)
        for model in ("default", "bad-only"):
            for _ in range(len(_echoing_faults())):
                fake.inject(*_echoing_faults())
                for shape in ("unary", "stream"):
                    try:
                        if shape == "unary":
                            yield str(stub.Rerank(_request(model), timeout=10))
                        else:
                            stream = stub.RerankStream(
                                pb.RerankStreamRequest(request=_request(model)), timeout=10
                            )
                            yield from (str(message) for message in stream)
                    except grpc.RpcError as exc:
                        yield _rpc_error_text(exc)
                fake.clear()
        fake.inject(*_echoing_faults())
        batch = [pb.RerankBatchRequest(request=_request("bad-only")) for _ in _echoing_faults()]
        yield from (str(answer) for answer in stub.RerankBatch(iter(batch), timeout=20))


def _http_calls(base: str, fake: CohereFake) -> Iterator[str]:
    with httpx.Client(base_url=base, timeout=10) as client:
        for path, body in [
            ("/v2/rerank", {"model": "bad-only", "query": "apple", "documents": ["an apple"]}),
            ("/v1/rerank", {"model": "default", "query": "apple", "documents": ["an apple"]}),
            ("/rerank", {"model": "bad-only", "query": "apple", "documents": ["an apple"]}),
            ("/tei/rerank", {"query": "apple", "texts": ["an apple"]}),
        ]:
            fake.inject(*_echoing_faults())
            for _ in _echoing_faults():
                reply = client.post(path, json=body)
                yield f"{reply.status_code} {reply.headers} {reply.text}"
            fake.clear()


def _rpc_error_text(exc: grpc.RpcError) -> str:
    call: Any = exc
    return f"{call.code()} {call.details()} {call.trailing_metadata()} {call.debug_error_string()}"


def test_the_canary_key_is_used_but_never_shown(tmp_path: Path) -> None:
    with CohereFake() as bad, CohereFake() as good:
        config = _config(tmp_path, bad.url, good.url)
        http_port = free_port()
        env = {ENV: CANARY, "RERANKD_LOG_LEVEL": "DEBUG"}
        args = ("--config", str(config), "--http-port", str(http_port), "--log-level", "DEBUG")
        with server_process(*args, env=env, tmp_path=tmp_path) as server:
            seen = list(_grpc_calls(server.address, bad))
            seen += list(_http_calls(f"http://127.0.0.1:{http_port}", bad))
            server.terminate()
            server.process.wait(20)
        log = server.log()
        sent = [r.headers.get("authorization", "") for r in bad.requests + good.requests]
    assert f"Bearer {CANARY}" in sent, "the key was not in play: the test proves nothing"
    everything = "\n".join(seen)
    assert "[REDACTED]" in everything, "no echoed body reached a caller: the test proves nothing"
    assert CANARY not in everything
    assert CANARY[:12] not in everything  # not even a prefix
    assert CANARY not in log
    for line in log.splitlines():
        json.loads(line)  # every line is one JSON object (nothing printed around the formatter)


def test_a_crash_trace_does_not_print_a_key(tmp_path: Path) -> None:
    script = (
        "import os\n"
        "from rerankd import logs\n"
        "from rerankd.config import ProviderConfig\n"
        "logs.configure()\n"
        f"key = ProviderConfig(kind='cohere', api_key_env={ENV!r}).resolve_api_key()\n"
        "raise RuntimeError('could not reach https://api.example.com/?key=' + key.get_secret_value())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, ENV: CANARY},
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert done.returncode == 1
    assert "RuntimeError" in done.stderr and "[REDACTED]" in done.stderr
    assert CANARY not in done.stderr + done.stdout


def test_log_lines_and_errors_are_scrubbed_in_process(caplog: pytest.LogCaptureFixture) -> None:
    errors.register_secret(CANARY)
    formatter = logs.JsonFormatter()
    try:
        raise ValueError(f"provider said {CANARY}")
    except ValueError:
        record = logging.LogRecord(
            "rerankd.test", logging.ERROR, __file__, 1, "key %s", (CANARY,), sys.exc_info()
        )
    record.access = {"model": f"m-{CANARY}", "documents": 3}
    line = formatter.format(record)
    assert CANARY not in line and json.loads(line)["documents"] == 3
    status = errors.to_status(errors.Unavailable(f"cohere: {CANARY}"))
    assert CANARY not in status.details
    assert (
        errors.scrub("-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMG\n-----END PRIVATE KEY-----") == "[REDACTED]"
    )


def test_keys_are_masked_in_settings_and_provider_reprs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, CANARY)
    inline = "inline-key-0123456789abcdef"
    settings = Settings(
        local_enabled=False,
        providers={
            "a": ProviderConfig(kind="cohere", api_key_env=ENV),
            "b": ProviderConfig(kind="cohere", api_key=SecretStr(inline)),
        },
    )
    wrapped = create_provider("a", settings.providers["a"], ProviderContext(settings, HttpClient()))
    assert isinstance(wrapped, PassageProvider)  # hosted providers come wrapped (passages)
    provider = wrapped.inner
    assert isinstance(provider, HttpProvider)
    shown = [
        repr(settings),
        str(settings),
        settings.model_dump_json(),
        repr(settings.providers["b"].resolve_api_key()),
        repr(wrapped),
        str(vars(wrapped)),
        repr(provider),
        str(vars(provider)),
    ]
    for text in shown:
        assert CANARY not in text and inline not in text
    assert provider.api_key == CANARY  # the value is there, only never shown


def test_provider_base_urls_come_only_from_config(monkeypatch: pytest.MonkeyPatch) -> None:
    """A request cannot point a provider elsewhere: parameters and metadata never change the URL."""
    from rerankd.providers.base import ProviderCall
    from rerankd.providers.registry import REGISTRY

    monkeypatch.setenv(ENV, CANARY)
    base = "http://127.0.0.1:9/configured"
    hostile = {
        "base_url": "http://evil.example",
        "url": "http://evil.example",
        "endpoint": "http://evil.example",
    }
    call = ProviderCall(
        model="m",
        query="q",
        documents=[Document(text="d")],
        parameters=hostile,
        metadata={"host": "evil.example", "x-base-url": "http://evil.example"},
    )
    checked = 0
    for kind in sorted(REGISTRY):
        if kind == "local":
            continue
        config = ProviderConfig(kind=kind, base_url=base, api_key_env=ENV, models=["m"])
        try:
            wrapped = create_provider(
                kind, config, ProviderContext(Settings(local_enabled=False), HttpClient())
            )
            assert isinstance(wrapped, PassageProvider)
            provider: Any = wrapped.inner  # the adapter, as the wrapper calls it
            request = provider.build_request(call)
        except errors.RerankError:
            continue  # the adapter refuses the hostile parameters outright: also fine
        assert request.url.startswith(base), (kind, request.url)
        assert "evil" not in request.url and "evil" not in str(request.headers)
        checked += 1
    assert checked >= 5, checked
