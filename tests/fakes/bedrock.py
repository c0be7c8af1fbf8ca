"""Fake AWS Bedrock: agent-runtime `POST /rerank` and bedrock-runtime `POST /model/{id}/invoke`.

Checks what AWS checks: a SigV4 `Authorization` (AWS4-HMAC-SHA256, service `bedrock` in the
credential scope) whose signature verifies against the fake's key pair over the received path,
signed headers and body; then the botocore model's constraints (exactly one TEXT query, 1..1000
INLINE sources, a model ARN, numberOfResults 1..1000 and <= sources) or Cohere's InvokeModel body
(query, documents, api_version >= 2, no unknown keys). Errors are `{"message"}` with the type in
`x-amzn-ErrorType`, as botocore parses them.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import unquote

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tests.fakes.base import FakeProvider, FakeSpec, Recorded, Reply, fake_score

ACCESS_KEY = "AKIDFAKEEXAMPLE0001"
SECRET_KEY = "fake-secret-access-key-0123456789"
REGION = "us-east-1"
MODEL = "amazon.rerank-v1:0"
COHERE = "cohere.rerank-v3-5:0"
_ARN = re.compile(r"^arn:aws(-[a-z-]+)?:bedrock:[a-z0-9-]+:(\d{12})?:(foundation-model|[a-z-]+)/[\w.:-]+$")
_AUTH = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([a-z0-9-]+)/([a-z-]+)/aws4_request, "
    r"SignedHeaders=([a-z0-9;-]+), Signature=([0-9a-f]{64})$"
)
_BAD_TOKEN = "The security token included in the request is invalid."
_BAD_SIGNATURE = "The request signature we calculated does not match the signature you provided."
_TYPES = {400: "ValidationException", 401: "UnrecognizedClientException", 403: "AccessDeniedException"}
_TYPES |= {404: "ResourceNotFoundException", 408: "ModelTimeoutException", 424: "DependencyFailedException"}
_TYPES |= {429: "ThrottlingException", 500: "InternalServerException", 502: "BadGatewayException"}
_TYPES |= {503: "ServiceUnavailableException"}


def error_reply(status: int, message: str, error_type: str | None = None) -> Reply:
    kind = error_type or _TYPES.get(status, "InternalServerException")
    # AWS appends a namespace URI after ':' (exact suffix UNVERIFIED); botocore strips it.
    headers = {"x-amzn-ErrorType": f"{kind}:http://internal.amazon.com/coral/com.amazon.bedrock/"}
    return Reply(status, {"message": message}, headers)


def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Dummy credentials for the standard chain; nothing from this machine (files, IMDS) is read."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/aws-config")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/aws-credentials")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_REGION", "AWS_BEARER_TOKEN_BEDROCK"):
        monkeypatch.delenv(name, raising=False)


class BedrockFake(FakeProvider):
    name = "bedrock"
    keys = {ACCESS_KEY: SECRET_KEY}

    def handle(self, request: Recorded) -> Reply:
        denied = self._check_signature(request)
        if denied:
            return denied
        try:
            body = request.json()
        except ValueError:
            return error_reply(400, "Malformed input request, please reformat your input and try again.")
        path = request.path.split("?")[0]
        if request.method == "POST" and path == "/rerank":
            return self._rerank(body)
        invoke = re.fullmatch(r"/model/([^/]+)/invoke", path)
        if request.method == "POST" and invoke:
            return self._invoke(unquote(invoke.group(1)), body)
        return error_reply(404, f"Unknown operation {request.method} {path}", "UnknownOperationException")

    def _check_signature(self, request: Recorded) -> Reply | None:
        match = _AUTH.match(request.headers.get("authorization", ""))
        if not match or not request.headers.get("x-amz-date"):
            return error_reply(403, "Missing Authentication Token", "MissingAuthenticationTokenException")
        key_id, day, region, service, signed, signature = match.groups()
        if (
            service != "bedrock"
            or key_id not in self.keys
            or not request.headers["x-amz-date"].startswith(day)
        ):
            return error_reply(403, _BAD_TOKEN, "UnrecognizedClientException")
        headers = {name: request.headers.get(name, "") for name in signed.split(";")}
        url = f"http://{headers['host']}{request.path}"
        aws = AWSRequest(method=request.method, url=url, data=request.body, headers=headers)
        aws.context["timestamp"] = request.headers["x-amz-date"]
        auth = SigV4Auth(Credentials(key_id, self.keys[key_id]), service, region)
        expected = auth.signature(auth.string_to_sign(aws, auth.canonical_request(aws)), aws)
        if "host" not in signed.split(";") or expected != signature:
            return error_reply(403, _BAD_SIGNATURE, "InvalidSignatureException")
        return None

    def _rerank(self, body: Any) -> Reply:
        try:
            (query,) = body["queries"]
            _require(query["type"] == "TEXT" and 1 <= len(query["textQuery"]["text"]) <= 32000)
            sources = body["sources"]
            _require(isinstance(sources, list) and 1 <= len(sources) <= 1000)
            texts = [_source_text(source) for source in sources]
            config = body["rerankingConfiguration"]
            _require(config["type"] == "BEDROCK_RERANKING_MODEL")
            bedrock = config["bedrockRerankingConfiguration"]
            arn = bedrock["modelConfiguration"]["modelArn"]
            count = bedrock.get("numberOfResults", len(texts))
            _require(isinstance(count, int) and 1 <= count <= 1000)
        except (KeyError, TypeError, ValueError):
            return error_reply(
                400, "1 validation error detected: request does not match the Rerank input shape"
            )
        if not _ARN.match(arn):
            return error_reply(400, "The provided model ARN for reranking is invalid.")
        if count > len(texts):
            return error_reply(400, "Cannot provide numberOfResults value that exceeds the number of sources")
        scores = _ranked(query["textQuery"]["text"], texts)[:count]
        return Reply(200, {"results": [{"index": i, "relevanceScore": s} for i, s in scores]})

    def _invoke(self, model: str, body: Any) -> Reply:
        if model.rsplit("/", 1)[-1] != COHERE:
            return error_reply(400, "The provided model identifier is invalid.")
        if not isinstance(body, dict):
            return error_reply(400, "Malformed input request: #: expected type: JSONObject")
        extra = sorted(set(body) - {"query", "documents", "top_n", "api_version", "max_tokens_per_doc"})
        problem = f"#: extraneous key [{extra[0]}] is not permitted" if extra else None
        if not isinstance(body.get("api_version"), int) or body["api_version"] < 2:
            problem = f"#/api_version: {body.get('api_version')} is not greater or equal to 2"
        docs, query, top_n = body.get("documents"), body.get("query"), body.get("top_n", None)
        if not isinstance(query, str) or not isinstance(docs, list) or not docs or len(docs) > 1000:
            problem = "#: required keys query, documents (1..1000 strings)"
        elif not all(isinstance(d, str) for d in docs) or (top_n is not None and not isinstance(top_n, int)):
            problem = "#/documents: expected type: String"
        if problem:
            return error_reply(400, f"Malformed input request: {problem}, please reformat your input.")
        scores = _ranked(query, docs)[: top_n or len(docs)]
        results = [{"index": i, "relevance_score": s} for i, s in scores]
        tokens = str(sum(len(query.split()) + len(doc.split()) for doc in docs))
        return Reply(
            200, {"id": "fake-invoke-id", "results": results}, {"X-Amzn-Bedrock-Input-Token-Count": tokens}
        )


def _require(condition: bool) -> None:
    if not condition:
        raise ValueError("request does not match the model")


def _source_text(source: dict[str, Any]) -> str:
    _require(source["type"] == "INLINE")
    inline = source["inlineDocumentSource"]
    if inline["type"] == "JSON":
        return json.dumps(inline["jsonDocument"])
    _require(inline["type"] == "TEXT" and isinstance(inline["textDocument"]["text"], str))
    return str(inline["textDocument"]["text"])


def _ranked(query: str, texts: list[str]) -> list[tuple[int, float]]:
    return sorted(((i, fake_score(query, t)) for i, t in enumerate(texts)), key=lambda p: p[1], reverse=True)


CONTRACT = FakeSpec(
    kind="bedrock",
    fake=BedrockFake,
    model=MODEL,
    config=lambda url: {
        "kind": "bedrock",
        "base_url": url,
        "api_key": SECRET_KEY,
        "options": {"region": REGION, "access_key_id": ACCESS_KEY},
    },
    error_reply=error_reply,
    max_documents=1000,
    object_documents=False,
)
