"""boto3 against the fake Bedrock: `bedrock-agent-runtime.rerank` and `bedrock-runtime.invoke_model`.

boto3 signs with dummy credentials from the environment (set here only), the fake verifies the
signature, and boto3 must parse the fake's answers and raise its typed errors from the fake's
error answers (status + x-amzn-ErrorType + {"message"}).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config

from tests.fakes.base import Status, fake_score
from tests.fakes.bedrock import COHERE, MODEL, REGION, BedrockFake, aws_env, error_reply

DOCS = ["Paris is the capital of France.", "Bananas are yellow.", "France borders Spain."]
ARN = f"arn:aws:bedrock:{REGION}::foundation-model/{MODEL}"


@pytest.fixture(scope="module")
def running() -> Iterator[BedrockFake]:
    with BedrockFake() as fake:
        yield fake  # type: ignore[misc]


@pytest.fixture
def fake(running: BedrockFake, monkeypatch: pytest.MonkeyPatch) -> BedrockFake:
    aws_env(monkeypatch)
    running.clear()
    return running


def client(service: str, fake: BedrockFake) -> Any:
    config = Config(retries={"total_max_attempts": 1}, connect_timeout=2, read_timeout=5)
    return boto3.session.Session().client(service, region_name=REGION, endpoint_url=fake.url, config=config)


def rerank(agent: Any, number_of_results: int) -> Any:
    return agent.rerank(
        queries=[{"type": "TEXT", "textQuery": {"text": "capital of France"}}],
        sources=[
            {"type": "INLINE", "inlineDocumentSource": {"type": "TEXT", "textDocument": {"text": doc}}}
            for doc in DOCS
        ],
        rerankingConfiguration={
            "type": "BEDROCK_RERANKING_MODEL",
            "bedrockRerankingConfiguration": {
                "modelConfiguration": {"modelArn": ARN},
                "numberOfResults": number_of_results,
            },
        },
    )


def test_boto3_rerank_parses_the_answer(fake: BedrockFake) -> None:
    answer = rerank(client("bedrock-agent-runtime", fake), 2)
    expected = sorted(range(3), key=lambda i: fake_score("capital of France", DOCS[i]), reverse=True)[:2]
    assert [r["index"] for r in answer["results"]] == expected
    assert answer["results"][0]["relevanceScore"] == pytest.approx(
        fake_score("capital of France", DOCS[expected[0]])
    )
    assert "/bedrock/aws4_request" in fake.requests[0].headers["authorization"]  # the fake verified it


def test_boto3_invoke_model_parses_the_answer(fake: BedrockFake) -> None:
    runtime = client("bedrock-runtime", fake)
    body = json.dumps({"query": "capital of France", "documents": DOCS, "top_n": 1, "api_version": 2})
    answer = runtime.invoke_model(
        modelId=COHERE, body=body, contentType="application/json", accept="application/json"
    )
    results = json.loads(answer["body"].read())["results"]
    assert len(results) == 1 and results[0]["index"] == 0
    assert fake.requests[0].path == "/model/cohere.rerank-v3-5%3A0/invoke"


def test_boto3_raises_validation_exception(fake: BedrockFake) -> None:
    agent = client("bedrock-agent-runtime", fake)
    with pytest.raises(agent.exceptions.ValidationException) as info:
        rerank(agent, 4)  # more results than sources: the fake refuses like AWS
    assert "exceeds the number of sources" in info.value.response["Error"]["Message"]
    runtime = client("bedrock-runtime", fake)
    with pytest.raises(runtime.exceptions.ValidationException) as invoke:
        runtime.invoke_model(
            modelId=COHERE, body=json.dumps({"query": "q", "documents": DOCS, "api_version": 1})
        )
    assert "api_version" in invoke.value.response["Error"]["Message"]


def test_boto3_raises_throttling_and_access_denied(fake: BedrockFake) -> None:
    for status in (429, 403):
        reply = error_reply(status, "slow down" if status == 429 else "no access")
        fake.inject(Status(reply.status, reply.body, reply.headers))
    agent = client("bedrock-agent-runtime", fake)
    with pytest.raises(agent.exceptions.ThrottlingException) as throttled:
        rerank(agent, 1)
    assert throttled.value.response["Error"]["Code"] == "ThrottlingException"
    assert throttled.value.response["ResponseMetadata"]["HTTPStatusCode"] == 429
    with pytest.raises(agent.exceptions.AccessDeniedException):
        rerank(agent, 1)
