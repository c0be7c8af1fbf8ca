"""The error taxonomy's gRPC statuses, details and secret scrubbing."""

from __future__ import annotations

from pathlib import Path

import grpc
import httpx
import pytest
from google.rpc import error_details_pb2, status_pb2
from rerankd import errors
from rerankd.v1 import rerank_pb2 as pb

from tests.conftest import running_app, stub_for


def _details(status: grpc.Status) -> status_pb2.Status:
    raw = dict(status.trailing_metadata)["grpc-status-details-bin"]
    return status_pb2.Status.FromString(raw)


def test_invalid_argument_carries_field_violations() -> None:
    status = errors.to_status(errors.invalid("documents[3]", "has no text"), "rid")
    assert status.code == grpc.StatusCode.INVALID_ARGUMENT
    assert status.details == "documents[3]: has no text"
    rich = _details(status)
    bad = error_details_pb2.BadRequest()
    assert rich.details[0].Unpack(bad)
    assert bad.field_violations[0].field == "documents[3]"
    info = error_details_pb2.ErrorInfo()
    assert rich.details[-1].Unpack(info) and info.metadata["request_id"] == "rid"


def test_resource_exhausted_carries_retry_info() -> None:
    status = errors.to_status(errors.ResourceExhausted("slow down", retry_after=1.5))
    retry = error_details_pb2.RetryInfo()
    assert _details(status).details[0].Unpack(retry)
    assert retry.retry_delay.seconds == 1 and retry.retry_delay.nanos == 500_000_000


def test_scrub_removes_credentials() -> None:
    text = "bad key Bearer abcdefghijklmnop, api_key=sk-live-123456789012345 and AKIAABCDEFGHIJKLMNOP"
    cleaned = errors.scrub(text, ["my-canary-secret"])
    assert "abcdefghijklmnop" not in cleaned and "sk-live" not in cleaned and "AKIA" not in cleaned
    assert errors.scrub("x my-canary-secret y", ["my-canary-secret"]) == "x [REDACTED] y"
    status = errors.to_status(errors.Unavailable("cohere: token=abcdef1234567890 rejected"))
    assert "abcdef1234567890" not in status.details


def test_scrub_short_agrees_with_scrub_and_forgets_when_a_secret_is_registered() -> None:
    texts = [
        "Rerank",
        "rerank-v3.5",
        "Authorization: Bearer abcdefghijkl123",
        "api_key=sk-abcdefghijklmnop",
        "AKIAABCDEFGHIJKLMNOP",
        "token: 123456789",
        "x" * 300,  # longer than what is remembered: scrubbed every time
    ]
    for text in texts:
        assert errors.scrub_short(text) == errors.scrub(text)
    secret = "plain-looking-value-0042"  # matches no credential pattern
    assert errors.scrub_short(f"model {secret}") == f"model {secret}"  # remembered as clean...
    errors.register_secret(secret)
    assert errors.scrub_short(f"model {secret}") == "model [REDACTED]"  # ...until it became a secret


async def test_rerankd_own_refusal_reaches_the_caller_unscrubbed(tmp_path: Path) -> None:
    """Issue 17, finding 6: "... in the authorization metadata" lost its last word to the scrubber."""
    tokens = tmp_path / "tokens"
    tokens.write_text("alice: 0123456789abcdef0123456789abcdef\n")
    request = pb.RerankRequest(query="q", documents=[pb.Document(text="a")])
    async with running_app(local_enabled=False, auth_tokens_file=tokens) as app, stub_for(app) as stub:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Rerank(request, timeout=10)
        async with httpx.AsyncClient(base_url=f"http://{app.http_address}", timeout=10) as http:
            reply = await http.post("/v2/rerank", json={"model": "m", "query": "q", "documents": ["a"]})
    assert caught.value.code() is grpc.StatusCode.UNAUTHENTICATED
    assert "[REDACTED]" not in (caught.value.details() or "") and "authorization" in (
        caught.value.details() or ""
    )
    assert reply.status_code == 401 and "[REDACTED]" not in reply.text


def test_prose_about_credentials_keeps_its_words_and_credentials_after_spaces_still_go() -> None:
    for prose in (
        "credentials required: a bearer token in the authorization metadata",
        "a bearer token in the authorization header",
        "the bearer token is not valid",
        "api_key or token required",
    ):
        assert errors.scrub(prose) == prose
    for leaked in (
        "password hunter22",
        "token 3f9c1e0b7a2d4c58b6e1f0a9d8c7b6a5",
        "api-key abcdefghijklmnopqrstuvwx",
    ):
        assert "[REDACTED]" in errors.scrub(leaked) and leaked.split()[-1] not in errors.scrub(leaked)
