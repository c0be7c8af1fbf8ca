"""The Provider contract every scorer implements, and what a provider declares it can do.

A provider turns one `ProviderCall` (a query and a slice of documents for one model) into
`ProviderResult` scores. It never sorts for the caller, applies `top_n` across chunks, retries or
falls back: the router does that. Errors are raised as `rerankd.errors.RerankError` subclasses
with `retryable` set honestly; cancellation (asyncio.CancelledError) must propagate, and any
in-flight I/O must be closed when the task is cancelled.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from rerankd.config import ProviderOptions
from rerankd.domain import Document, Scored, Truncation, Usage


@dataclass(frozen=True, slots=True)
class Capabilities:
    """Limits and features of one provider model; the router plans calls with them."""

    max_documents: int | None = None  # most documents in one call; longer lists are chunked
    max_tokens: int | None = None  # most tokens in one query + document pair
    object_documents: bool = False  # accepts documents with named fields natively
    native_rank_fields: bool = False  # ranks on named fields itself


@dataclass(frozen=True, slots=True)
class ModelDescription:
    """What ListModels and `rerankd models` show of one provider model beyond its name."""

    family: str = ""  # local models: the architecture ("bert", "xlm-roberta", ...)
    max_length: int = 0  # most tokens of one query + document pair; 0: not known
    source: str = ""  # local models: "bundled (...)", "dir <folder>", "hub <repo>@<commit>"


@dataclass(frozen=True, slots=True)
class ProviderCall:
    """One request to one provider model, for one slice of the caller's documents.

    `top_n` is None when the router needs every score (chunked lists). `timeout` is the time this
    attempt may take, in seconds, already cut to the caller's remaining deadline. `headers` are
    outbound tracing headers (traceparent, tracestate, x-request-id, ...) to send with the call.
    """

    model: str
    query: str
    documents: Sequence[Document]
    top_n: int | None = None
    rank_fields: tuple[str, ...] = ()
    truncation: Truncation = Truncation.END
    max_tokens_per_doc: int | None = None
    parameters: Mapping[str, Any] = field(default_factory=dict)
    timeout: float | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    metadata: Mapping[str, str] = field(default_factory=dict)
    request_id: str = ""


@dataclass(slots=True)
class ProviderResult:
    """Scores for (some of) the call's documents, indices relative to ProviderCall.documents."""

    scores: list[Scored]
    usage: Usage
    model: str


class Provider(abc.ABC):
    """A named provider instance from the configuration (e.g. "local", "cohere-eu"), built complete.

    `Options` is the kind's typed `options` model (config.ProviderConfig validates against it).
    """

    kind: ClassVar[str]
    Options: ClassVar[type[ProviderOptions]] = ProviderOptions

    def __init__(
        self, name: str, *, timeout_s: float | None = None, forward_metadata: Sequence[str] = ()
    ) -> None:
        self.name = name
        self.timeout_s = timeout_s  # most time one call may take (the config's timeout_s)
        self.forward_metadata = tuple(forward_metadata)  # caller metadata keys it may receive ("*": all)

    @abc.abstractmethod
    def capabilities(self, model: str) -> Capabilities:
        """What `model` on this provider accepts."""

    @abc.abstractmethod
    async def rerank(self, call: ProviderCall) -> ProviderResult:
        """Score `call.documents` against `call.query` with `call.model`."""

    def models(self) -> Sequence[str]:
        """Model names this provider serves under their own name (ListModels, direct routing)."""
        return ()

    def describe(self, model: str) -> ModelDescription:
        """Family, max length and source of `model` (hosted: the pair limit where it is known)."""
        return ModelDescription(max_length=self.capabilities(model).max_tokens or 0)

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Load and warm up; the server reports SERVING only after every provider started."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release resources (threads, connections)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"
