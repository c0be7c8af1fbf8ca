"""Bedrock adapter: both APIs' pure builders and parsers, SigV4 signing, then calls against the fake."""

from __future__ import annotations

import datetime
import json
import threading
from collections.abc import Iterator

import httpx
import pytest
from botocore.credentials import Credentials, RefreshableCredentials
from rerankd import errors
from rerankd.config import ProviderConfig
from rerankd.domain import Document, Truncation
from rerankd.providers import aws_sigv4
from rerankd.providers.base import ProviderCall
from rerankd.providers.bedrock import BedrockProvider
from rerankd.providers.http import HttpClient, HttpReply, HttpRequest

from tests.fakes.base import Status, fake_score
from tests.fakes.bedrock import (
    ACCESS_KEY,
    COHERE,
    MODEL,
    REGION,
    SECRET_KEY,
    BedrockFake,
    aws_env,
    error_reply,
)

PURE_HTTP = HttpClient()  # never sends: for the pure builder and parser tests
DOCS = [Document("cats purr softly"), Document("dogs bark"), Document("a cat chased a dog")]
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def provider(url: str | None = None, http: HttpClient | None = None, **options: str) -> BedrockProvider:
    config = ProviderConfig(kind="bedrock", base_url=url, options={"region": REGION, **options})
    return BedrockProvider("bedrock", config, http or PURE_HTTP)


def static(url: str, http: HttpClient, secret: str = SECRET_KEY, **options: str) -> BedrockProvider:
    options = {"region": REGION, "access_key_id": ACCESS_KEY, **options}
    config = ProviderConfig(kind="bedrock", base_url=url, api_key=secret, options=options)
    return BedrockProvider("bedrock", config, http)


def call(**kwargs: object) -> ProviderCall:
    fields: dict[str, object] = {"model": MODEL, "query": "cat", "documents": DOCS, **kwargs}
    return ProviderCall(**fields)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def running() -> Iterator[BedrockFake]:
    with BedrockFake() as fake:
        yield fake  # type: ignore[misc]


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    aws_env(monkeypatch)
    return monkeypatch


def test_rerank_body_builds_arn_and_clamps_results() -> None:
    request = provider().build_request(call(top_n=10, parameters={"k": "v"}))
    assert request.url == f"https://bedrock-agent-runtime.{REGION}.amazonaws.com/rerank"
    assert "authorization" not in {name.lower() for name in request.headers}  # rerank() signs
    body = json.loads(request.body)
    assert body["queries"] == [{"type": "TEXT", "textQuery": {"text": "cat"}}]
    assert body["sources"][1] == {
        "type": "INLINE",
        "inlineDocumentSource": {"type": "TEXT", "textDocument": {"text": "dogs bark"}},
    }
    config = body["rerankingConfiguration"]
    assert config["type"] == "BEDROCK_RERANKING_MODEL"
    bedrock = config["bedrockRerankingConfiguration"]
    assert bedrock["numberOfResults"] == 3
    model = bedrock["modelConfiguration"]
    assert model == {
        "modelArn": f"arn:aws:bedrock:{REGION}::foundation-model/{MODEL}",
        "additionalModelRequestFields": {"k": "v"},
    }


def test_model_arns_and_partitions() -> None:
    arn = "arn:aws:bedrock:us-west-2::foundation-model/cohere.rerank-v3-5:0"
    assert provider().model_arn(arn) == arn
    assert provider(region="cn-north-1").model_arn(MODEL).startswith("arn:aws-cn:bedrock:cn-north-1::")
    assert provider(region="us-gov-west-1").model_arn(MODEL).startswith("arn:aws-us-gov:")


def test_invoke_body_and_encoded_model_path() -> None:
    bedrock = provider(api="invoke")
    request = bedrock.build_request(call(model=COHERE))
    assert (
        request.url == f"https://bedrock-runtime.{REGION}.amazonaws.com/model/cohere.rerank-v3-5%3A0/invoke"
    )
    assert json.loads(request.body) == {"query": "cat", "documents": [d.text for d in DOCS], "api_version": 2}
    assert json.loads(bedrock.build_request(call(model=COHERE, top_n=2)).body)["top_n"] == 2
    with pytest.raises(errors.InvalidArgument, match="parameters"):
        bedrock.build_request(call(model=COHERE, parameters={"api_version": 1}))


def test_rank_fields_are_rendered_as_text() -> None:
    docs = [Document(fields={"title": "T", "body": "B"})]
    body = json.loads(provider().build_request(call(documents=docs, rank_fields=("title", "body"))).body)
    assert body["sources"][0]["inlineDocumentSource"]["textDocument"]["text"] == "title: T\nbody: B"


def test_refusals_and_misconfiguration(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(errors.InvalidArgument):
        provider().build_request(call(truncation=Truncation.NONE))
    with pytest.raises(errors.InvalidArgument):
        provider().build_request(call(max_tokens_per_doc=512))
    with pytest.raises(errors.ProviderMisconfigured):
        provider(api="converse")
    aws_env(monkeypatch)
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    with pytest.raises(errors.ProviderMisconfigured, match="region"):
        BedrockProvider("bedrock", ProviderConfig(kind="bedrock"), PURE_HTTP)
    with pytest.raises(errors.ProviderMisconfigured):  # a key id without its secret
        provider(access_key_id=ACCESS_KEY)


def test_parse_both_answer_shapes() -> None:
    rerank = {"results": [{"index": 2, "relevanceScore": 0.9}, {"index": 0, "relevanceScore": 0.2}]}
    result = provider().parse_response(call(), HttpReply(200, {}, json.dumps(rerank).encode()))
    assert [(s.index, s.score) for s in result.scores] == [(2, 0.9), (0, 0.2)]
    assert result.usage.documents == 3 and result.model == MODEL
    invoke = {"id": "x", "results": [{"index": 1, "relevance_score": 0.7}]}
    headers = {"x-amzn-bedrock-input-token-count": "12"}
    result = provider(api="invoke").parse_response(
        call(), HttpReply(200, headers, json.dumps(invoke).encode())
    )
    assert [(s.index, s.score) for s in result.scores] == [(1, 0.7)] and result.usage.total_tokens == 12
    with pytest.raises(errors.BadResponse):
        bad = {"results": [{"index": 5, "relevanceScore": 0.1}]}
        provider().parse_response(call(), HttpReply(200, {}, json.dumps(bad).encode()))


def test_error_message_from_header_or_body_type() -> None:
    reply = error_reply(400, "Cannot provide numberOfResults value that exceeds the number of sources")
    headers = {k.lower(): v for k, v in reply.headers.items()}
    text = provider().error_message(HttpReply(400, headers, json.dumps(reply.body).encode()))
    assert (
        text == "ValidationException: Cannot provide numberOfResults value that exceeds the number of sources"
    )
    body = {"__type": "com.amazon.coral#ThrottlingException", "Message": "Rate exceeded"}
    assert (
        provider().error_message(HttpReply(429, {}, json.dumps(body).encode()))
        == "ThrottlingException: Rate exceeded"
    )


async def test_rerank_signed_with_the_default_chain(
    fake: BedrockFake, http: HttpClient, aws: pytest.MonkeyPatch
) -> None:
    aws.setenv("AWS_SESSION_TOKEN", "fake-session-token")
    headers = {"traceparent": TRACEPARENT, "x-request-id": "req-1"}
    result = await provider(fake.url, http).rerank(call(top_n=2, headers=headers))
    expected = sorted(range(3), key=lambda i: fake_score("cat", DOCS[i].text), reverse=True)[:2]
    assert [s.index for s in result.scores] == expected
    sent = fake.requests[0].headers
    assert (
        f"Credential={ACCESS_KEY}/" in sent["authorization"]
        and f"/{REGION}/bedrock/aws4_request" in sent["authorization"]
    )
    signed = sent["authorization"].split("SignedHeaders=")[1].split(",")[0].split(";")
    assert {"host", "x-amz-date", "content-type", "x-amz-security-token"} <= set(signed)
    assert sent["traceparent"] == TRACEPARENT and "traceparent" not in signed and "x-request-id" not in signed
    assert sent["x-amz-security-token"] == "fake-session-token"


async def test_invoke_model_against_fake(fake: BedrockFake, http: HttpClient) -> None:
    result = await static(fake.url, http, api="invoke").rerank(call(model=COHERE, top_n=1))
    assert len(result.scores) == 1 and result.usage.total_tokens > 0
    assert fake.requests[0].path == "/model/cohere.rerank-v3-5%3A0/invoke"


async def test_bad_secret_fails_the_signature_check(fake: BedrockFake, http: HttpClient) -> None:
    wrong = "wrong-secret-access-key-000000000"
    with pytest.raises(errors.ProviderMisconfigured) as info:
        await static(fake.url, http, secret=wrong).rerank(call())
    assert "InvalidSignatureException" in info.value.message and wrong not in info.value.message


async def test_no_credentials_anywhere(http: HttpClient, aws: pytest.MonkeyPatch) -> None:
    aws.delenv("AWS_ACCESS_KEY_ID")
    aws.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(errors.ProviderMisconfigured, match="no AWS credentials"):
        await provider("http://127.0.0.1:9", http).rerank(call())


async def test_throttling_and_validation_errors(fake: BedrockFake, http: HttpClient) -> None:
    throttled = error_reply(429, "Too many requests, please wait before trying again.")
    fake.inject(Status(429, throttled.body, {**throttled.headers, "Retry-After": "1"}))
    with pytest.raises(errors.ResourceExhausted) as limited:
        await static(fake.url, http).rerank(call())
    assert limited.value.retry_after == 1.0 and "ThrottlingException" in limited.value.message
    with pytest.raises(errors.InvalidArgument) as invalid:
        await static(fake.url, http).rerank(call(model="not a model"))
    assert (
        invalid.value.message
        == "bedrock: ValidationException: The provided model ARN for reranking is invalid."
    )


async def test_fake_enforces_auth_and_number_of_results(fake: BedrockFake) -> None:
    body = json.loads(provider().build_request(call()).body)
    body["rerankingConfiguration"]["bedrockRerankingConfiguration"]["numberOfResults"] = 4
    request = HttpRequest(
        "POST", f"{fake.url}/rerank", {"content-type": "application/json"}, json.dumps(body).encode()
    )
    creds = await aws_sigv4.AwsCredentials("t", static=Credentials(ACCESS_KEY, SECRET_KEY)).frozen()
    signed = aws_sigv4.sign(request, creds, REGION, "bedrock")
    async with httpx.AsyncClient() as client:
        unsigned = await client.post(request.url, content=request.body, headers=request.headers)
        too_many = await client.post(signed.url, content=signed.body, headers=dict(signed.headers))
    assert unsigned.status_code == 403 and unsigned.headers["x-amzn-errortype"].startswith(
        "MissingAuthenticationToken"
    )
    assert too_many.status_code == 400 and "exceeds the number of sources" in too_many.json()["message"]


async def test_refreshable_credentials_refresh_off_the_loop() -> None:
    loop_thread = threading.get_ident()
    refreshed_in: list[int] = []

    def refresh() -> dict[str, str]:
        refreshed_in.append(threading.get_ident())
        expiry = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)
        return {"access_key": "AKIDNEW", "secret_key": "s2", "token": "t2", "expiry_time": expiry.isoformat()}

    stale = {
        "access_key": "AKIDOLD",
        "secret_key": "s1",
        "token": "t1",
        "expiry_time": "2000-01-01T00:00:00Z",
    }
    creds = RefreshableCredentials.create_from_metadata(stale, refresh, "test")
    frozen = await aws_sigv4.AwsCredentials("t", static=creds).frozen()
    assert frozen.access_key == "AKIDNEW" and refreshed_in and refreshed_in[0] != loop_thread
