"""AWS Bedrock rerank, SigV4-signed (service "bedrock"), through one of two APIs (option `api`).

Not a JSON spec (providers/jsonspec.py): its bodies are nested AWS shapes and every request is
signed after it is built; its one hook is `rerank` (sign, then the shared send and `answer`).

- "rerank" (default): bedrock-agent-runtime `POST /rerank` (queries, sources,
  rerankingConfiguration.modelArn, numberOfResults clamped to the documents; `relevanceScore`).
- "invoke": bedrock-runtime InvokeModel `POST /model/{modelId}/invoke` with Cohere's body
  (`api_version` 2; `relevance_score`), e.g. for cohere.rerank-v3-5:0.

Options: `region` (else AWS_REGION / AWS_DEFAULT_REGION / AWS config), `profile`, and
`access_key_id` for a static key pair whose secret key is the provider's api_key / api_key_env /
api_key_file; without it the standard AWS credential chain is used. Models are full ARNs or bare
model ids (the foundation-model ARN is built from the region). Documents with fields are sent as
text rendered from `rank_fields`; `parameters` become additionalModelRequestFields ("rerank") or
extra body keys ("invoke"). Bedrock has no truncation switch or per-document token limit, so
truncation NONE and `max_tokens_per_doc` are refused.
"""

from __future__ import annotations

import dataclasses
from typing import Any
from urllib.parse import quote

from botocore.credentials import Credentials

from rerankd import errors
from rerankd.config import ProviderConfig, ProviderOptions
from rerankd.domain import Truncation, Usage
from rerankd.providers import aws_sigv4
from rerankd.providers.base import Capabilities, ProviderCall, ProviderResult
from rerankd.providers.http import HttpClient, HttpProvider, HttpReply, HttpRequest, encode_json
from rerankd.providers.jsonwire import scores, texts, top_n, unsupported, with_parameters

MAX_SOURCES = 1000  # the Rerank API's limit on sources (botocore model); also used for InvokeModel
_HOSTS = {"rerank": "bedrock-agent-runtime", "invoke": "bedrock-runtime"}
_INVOKE_RESERVED = frozenset({"query", "documents", "top_n", "api_version"})


class BedrockOptions(ProviderOptions):
    api: str = "rerank"  # "rerank" (bedrock-agent-runtime) | "invoke" (bedrock-runtime InvokeModel)
    region: str | None = None  # default: AWS_REGION / AWS_DEFAULT_REGION / the AWS config file
    profile: str | None = None  # an AWS config profile
    access_key_id: str | None = None  # with the provider's api_key as the secret key: a static pair


class BedrockProvider(HttpProvider):
    """Rerank models on AWS Bedrock (amazon.rerank-v1:0, cohere.rerank-v3-5:0)."""

    kind = "bedrock"
    Options = BedrockOptions

    def __init__(self, name: str, config: ProviderConfig, http: HttpClient) -> None:
        super().__init__(name, config, http)
        options: BedrockOptions = config.options
        self.api = options.api
        if self.api not in _HOSTS:
            raise errors.ProviderMisconfigured(
                f"{name}: options.api must be 'rerank' or 'invoke'", provider=name
            )
        profile = options.profile
        self.region = aws_sigv4.resolve_region(options.region, profile, name)
        default = f"https://{_HOSTS[self.api]}.{self.region}.amazonaws.com"
        self.base_url = (config.base_url or default).rstrip("/")
        key_id = options.access_key_id
        static = Credentials(key_id, self.api_key) if key_id else None
        self.credentials = aws_sigv4.AwsCredentials(name, profile=profile, static=static)

    def capabilities(self, model: str) -> Capabilities:
        return Capabilities(max_documents=MAX_SOURCES)

    def model_arn(self, model: str) -> str:
        if model.startswith("arn:"):
            return model
        return f"arn:{aws_sigv4.partition(self.region)}:bedrock:{self.region}::foundation-model/{model}"

    def build_request(self, call: ProviderCall) -> HttpRequest:
        """The unsigned request (no tracing headers); `rerank` signs it."""
        if call.max_tokens_per_doc is not None:
            raise unsupported(self.name, "max_tokens_per_doc", "Bedrock rerank has no such field")
        if call.truncation is Truncation.NONE:
            raise unsupported(self.name, "truncation", "Bedrock shortens long documents itself")
        n = top_n(call)
        if self.api == "invoke":
            url = f"{self.base_url}/model/{quote(call.model, safe='-._~')}/invoke"
            body: dict[str, Any] = {"query": call.query, "documents": texts(call)}
            if n is not None:
                body["top_n"] = n
            if "cohere." in call.model:
                body["api_version"] = 2  # required by Cohere on Bedrock, must be >= 2
            body = with_parameters(self.name, body, call.parameters, _INVOKE_RESERVED)
        else:
            url = f"{self.base_url}/rerank"
            body = self._rerank_body(call, len(call.documents) if n is None else n)
        headers = {"content-type": "application/json", "accept": "application/json"}
        return HttpRequest("POST", url, headers, encode_json(body))

    def _rerank_body(self, call: ProviderCall, top_n: int) -> dict[str, Any]:
        model: dict[str, Any] = {"modelArn": self.model_arn(call.model)}
        if call.parameters:
            model["additionalModelRequestFields"] = dict(call.parameters)
        return {
            "queries": [{"type": "TEXT", "textQuery": {"text": call.query}}],
            "sources": [
                {"type": "INLINE", "inlineDocumentSource": {"type": "TEXT", "textDocument": {"text": text}}}
                for text in texts(call)
            ],
            "rerankingConfiguration": {
                "type": "BEDROCK_RERANKING_MODEL",
                # numberOfResults above the number of sources is a ValidationException: clamped.
                "bedrockRerankingConfiguration": {"modelConfiguration": model, "numberOfResults": top_n},
            },
        }

    async def rerank(self, call: ProviderCall) -> ProviderResult:
        request = self.build_request(call)
        signed = aws_sigv4.sign(request, await self.credentials.frozen(), self.region, "bedrock")
        # Tracing headers go on after signing, deliberately: botocore never signs traceparent,
        # tracestate or baggage either, so proxies and meshes that rewrite them cannot break the
        # signature. Signed headers win any name clash.
        taken = {name.lower() for name in signed.headers}
        tracing = {name: value for name, value in call.headers.items() if name.lower() not in taken}
        outbound = dataclasses.replace(signed, headers={**tracing, **signed.headers})
        return self.answer(call, await self.http.send(self.name, outbound, call.timeout))

    def parse_response(self, call: ProviderCall, reply: HttpReply) -> ProviderResult:
        score_key = "relevance_score" if self.api == "invoke" else "relevanceScore"
        # The Rerank API may page with nextToken; numberOfResults <= sources returns all in one.
        ranked = scores(self.name, reply.json()["results"], len(call.documents), score_key=score_key)
        # Neither API reports usage in the body; InvokeModel may send token counts (UNVERIFIED).
        tokens = reply.headers.get("x-amzn-bedrock-input-token-count", "")
        usage = Usage(total_tokens=int(tokens) if tokens.isdigit() else 0, documents=len(call.documents))
        return ProviderResult(ranked, usage, call.model)

    def error_message(self, reply: HttpReply) -> str:
        """AWS errors: the type in x-amzn-ErrorType ("Type:uri" or "ns#Type"), text in {"message"}."""
        try:
            body = reply.json()
        except ValueError:
            body = {}
        body = body if isinstance(body, dict) else {}
        kind = reply.headers.get("x-amzn-errortype") or str(body.get("__type") or "")
        kind = kind.split(":", 1)[0].rsplit("#", 1)[-1]
        message = body.get("message") or body.get("Message") or ""
        if not isinstance(message, str):
            message = str(message)
        text = ": ".join(part for part in (kind, message) if part)
        return text or reply.body[:300].decode(errors="replace")

    def _secrets(self) -> list[str]:
        return [*super()._secrets(), self.options.access_key_id or ""]
