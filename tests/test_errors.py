"""The error taxonomy's gRPC statuses, details and secret scrubbing."""

from __future__ import annotations

import grpc
from google.rpc import error_details_pb2, status_pb2
from rerankd import errors


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
