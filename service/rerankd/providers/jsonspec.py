"""Declarative JSON rerank adapters: a `JsonSpec` says where everything is, `JsonProvider` speaks it.

Most rerank APIs are one shape under different names: POST a query and a list of texts, get back
a list of {index, score}. A provider written as a spec is a module docstring (what was verified,
where, and what was not), an `Options` model if it has options, and a `JsonSpec`:

    class JinaProvider(JsonProvider):
        kind = "jina"
        spec = JsonSpec(path="/rerank", default_base_url="https://api.jina.ai/v1",
                        fixed={"return_documents": False}, key_prefixes=("jina",))

Hooks (method overrides) only where an API really differs: `body` (Cohere v1's and Pinecone's
object documents), `auth_headers` (Pinecone's Api-Key), `capabilities` (per-model limits), and
`HttpProvider.rerank` for signing (Bedrock). Everything is pure and built once per provider where
it can be (URL, headers, reserved keys, capabilities), so a call costs what a hand-written adapter
did (bench/results/ab.md).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from rerankd import errors
from rerankd.config import ProviderConfig, ProviderOptions
from rerankd.domain import Scored, Truncation, Usage
from rerankd.providers.base import Capabilities, ProviderCall, ProviderResult
from rerankd.providers.http import HttpClient, HttpProvider, HttpReply, HttpRequest, encode_json
from rerankd.providers.jsonwire import (
    answered_model,
    count_at,
    error_text,
    json_object,
    scores,
    texts,
    unsupported,
    with_parameters,
)


@dataclass(frozen=True, slots=True)
class Truncate:
    """Unified truncation on the wire: `field` set to `end` (Truncation.END) or `none` (NONE).

    A value of None sends nothing for that case (the engine's own default is that behaviour);
    no field at all accepts both and sends nothing (an engine with no switch, llama.cpp).
    """

    field: str | None = None
    end: Any = True
    none: Any = False


class RawScoresOptions(ProviderOptions):
    """Options of a kind whose engine answers raw logits (JsonSpec.logits)."""

    raw_scores: bool = False  # true: the engine's logits as they are; false: sigmoid, in (0, 1)


def sigmoid(x: float) -> float:
    """1 / (1 + e^-x) without overflow for large |x|."""
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


@dataclass(frozen=True, slots=True)
class JsonSpec:
    """Where one JSON rerank API keeps each thing; every default is the common (Jina/Cohere) shape."""

    path: str  # appended to base_url, e.g. "/rerank"
    default_base_url: str = ""  # "" = base_url is required (self-hosted engines, deployments)
    auth: str = "bearer"  # "bearer" (a key is required), "optional-bearer" (sent when set), "none"
    # -- the request ---------------------------------------------------------------------------
    query: str = "query"
    query_object: str | None = None  # the query as {query_object: text} (NIM: {"text": ...})
    documents: str = "documents"
    document_object: str | None = None  # documents as [{document_object: text}] (NIM passages)
    send_model: bool = True
    top_n: str | None = "top_n"  # None: the API has no top-n; the best of its answer are kept
    truncate: Truncate | None = None  # None: the API shortens long documents itself; NONE is refused
    truncate_why: str = "it shortens long documents itself"
    max_tokens_per_doc: str | None = None  # None: max_tokens_per_doc is refused
    max_tokens_why: str = "its API has no such field"
    fixed: Mapping[str, Any] = field(default_factory=dict)  # sent on every call, not overridable
    defaults: Mapping[str, Any] = field(default_factory=dict)  # sent unless `parameters` set them
    reserved: frozenset[str] = frozenset()  # more keys `parameters` may not set
    # -- the answer ----------------------------------------------------------------------------
    results: str | None = "results"  # key of the result list; None: the answer is the bare list
    index: str = "index"
    score: str = "relevance_score"
    usage: tuple[str, ...] = ("usage", "total_tokens")  # path of the billed count; () = none
    usage_unit: str = "total_tokens"  # the domain.Usage field it fills
    usage_header: str | None = None  # a header with the token count (TEI's x-compute-tokens)
    answers_model: bool = True  # the answer's "model" names the model that answered
    error_keys: tuple[str, ...] = ("detail", "message", "error")  # where error text lives, in order
    error_kind: tuple[str, ...] = ()  # path of an error type written before the text ("Validation: ...")
    logits: bool = False  # scores are raw logits: a sigmoid maps them into (0, 1) unless raw_scores
    # -- scrubbing and limits -----------------------------------------------------------------
    key_prefixes: tuple[str, ...] = ()  # the provider's key shapes ("jina" for jina_...), scrubbed
    max_documents: int | None = None
    max_tokens: int | None = None
    object_documents: bool = False
    endpoints: tuple[str, ...] = ()  # a base_url ending in one of these (or `path`) is the endpoint

    def reserved_keys(self) -> frozenset[str]:
        """The body keys rerankd sets from the request's own fields: `parameters` may not set them."""
        keys = {self.query, self.documents, *self.fixed, *self.reserved}
        keys |= {name for name in (self.top_n, self.max_tokens_per_doc) if name}
        if self.send_model:
            keys.add("model")
        if self.truncate is not None and self.truncate.field:
            keys.add(self.truncate.field)
        return frozenset(keys)


_CONTENT = {"content-type": "application/json", "accept": "application/json"}


class _Credentials(dict[str, str]):
    """Auth headers built once: a dict that never shows its values (repr, vars(), logs)."""

    def __repr__(self) -> str:
        return repr(dict.fromkeys(self, "[REDACTED]"))

    __str__ = __repr__


class JsonProvider(HttpProvider):
    """An HTTP provider whose wire format is its `spec` (instances may choose theirs in __init__)."""

    spec: JsonSpec  # the class's; an instance may adopt another in __init__ (configure)

    def __init__(self, name: str, config: ProviderConfig, http: HttpClient) -> None:
        super().__init__(name, config, http)
        self.configure(type(self).spec)
        errors.register_key_prefixes(self.spec.key_prefixes)

    def configure(self, spec: JsonSpec) -> None:
        """Adopt `spec`: the URL, headers, reserved keys and limits it implies, worked out once."""
        self.spec = spec
        if not self.base_url:
            self.base_url = spec.default_base_url.rstrip("/")
        if not self.base_url:
            raise errors.ProviderMisconfigured(
                f"{self.name}: kind {self.kind} needs base_url (the server to call)", provider=self.name
            )
        pasted = self.base_url.endswith((spec.path, *spec.endpoints))
        self.url = self.base_url if pasted else f"{self.base_url}{spec.path}"
        self._reserved = spec.reserved_keys()
        self.max_documents = spec.max_documents
        self._activate = spec.logits and not getattr(self.options, "raw_scores", False)
        key = self._api_key.get_secret_value() if self._api_key is not None else ""
        bearer = _Credentials(authorization=f"Bearer {key}") if key else _Credentials()
        # Worked out once; None: a key is required and missing (refused at each call, not at start-up).
        self._auth: Mapping[str, str] | None = _Credentials() if spec.auth == "none" else bearer
        if spec.auth == "bearer" and not key:
            self._auth = None

    def capabilities(self, model: str) -> Capabilities:
        spec = self.spec
        return Capabilities(
            max_documents=self.max_documents,
            max_tokens=spec.max_tokens,
            object_documents=spec.object_documents,
        )

    # -- the request ---------------------------------------------------------------------------
    def auth_headers(self) -> Mapping[str, str]:
        """The credentials to send (ProviderMisconfigured when a required key is missing)."""
        if self._auth is None:
            return {"authorization": f"Bearer {self.api_key}"}  # raises: no key configured
        return self._auth

    def body(self, call: ProviderCall) -> dict[str, Any]:
        """The JSON body for `call` (pure); InvalidArgument for what the API cannot honour."""
        spec = self.spec
        if call.truncation is Truncation.NONE and spec.truncate is None:
            raise unsupported(self.name, "truncation", spec.truncate_why)
        if call.max_tokens_per_doc is not None and spec.max_tokens_per_doc is None:
            raise unsupported(self.name, "max_tokens_per_doc", spec.max_tokens_why)
        body: dict[str, Any] = {"model": call.model} if spec.send_model else {}
        body[spec.query] = call.query if spec.query_object is None else {spec.query_object: call.query}
        docs = texts(call)
        body[spec.documents] = (
            docs if spec.document_object is None else [{spec.document_object: t} for t in docs]
        )
        if call.max_tokens_per_doc is not None:
            body[spec.max_tokens_per_doc] = call.max_tokens_per_doc  # type: ignore[index]
        if spec.truncate is not None and spec.truncate.field:
            value = spec.truncate.end if call.truncation is Truncation.END else spec.truncate.none
            if value is not None:
                body[spec.truncate.field] = value
        if spec.fixed:
            body.update(spec.fixed)
        if spec.top_n is not None and call.top_n is not None:
            body[spec.top_n] = min(call.top_n, len(docs))
        if call.parameters:
            body = with_parameters(self.name, body, call.parameters, self._reserved)
        if spec.defaults:
            body = {**spec.defaults, **body}
        return body

    def build_request(self, call: ProviderCall) -> HttpRequest:
        headers = {**_CONTENT, **call.headers, **self.auth_headers()}
        return HttpRequest("POST", self.url, headers, encode_json(self.body(call)))

    # -- the answer ----------------------------------------------------------------------------
    def parse_response(self, call: ProviderCall, reply: HttpReply) -> ProviderResult:
        spec = self.spec
        count = len(call.documents)
        answer = reply.json()
        if spec.results is None:
            items, answer = answer, None
        else:
            answer = json_object(self.name, answer)
            items = answer.get(spec.results)
        ranked = scores(self.name, items, count, spec.score, spec.index)
        if spec.top_n is None and call.top_n is not None and call.top_n < len(ranked):
            ranked = sorted(ranked, key=lambda s: -s.score)[: call.top_n]  # stable: ties keep their order
        if self._activate:
            ranked = [Scored(s.index, sigmoid(s.score)) for s in ranked]
        usage = Usage(documents=count)
        if spec.usage:
            setattr(usage, spec.usage_unit, count_at(answer, *spec.usage))
        if spec.usage_header is not None:
            tokens = reply.headers.get(spec.usage_header, "")
            usage.total_tokens = int(tokens) if tokens.isdigit() else 0
        model = answered_model(answer, call) if spec.answers_model else call.model
        return ProviderResult(ranked, usage, model)

    def error_message(self, reply: HttpReply) -> str:
        spec = self.spec
        message = error_text(reply, spec.error_keys) or super().error_message(reply)
        if spec.error_kind:
            try:
                kind: Any = reply.json()
            except ValueError:
                kind = None
            for key in spec.error_kind:
                kind = kind.get(key) if isinstance(kind, dict) else None
            if isinstance(kind, str) and kind:
                return f"{kind}: {message}"
        return message
