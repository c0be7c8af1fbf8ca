"""Protobuf <-> domain conversions for the gRPC front door (nothing else lives here)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from google.protobuf import json_format

from rerankd import errors
from rerankd.domain import (
    Attempt,
    Document,
    Passage,
    Ranked,
    RerankQuery,
    Scored,
    TraceContext,
    Truncation,
    Usage,
)
from rerankd.routing import ModelEntry
from rerankd.v1 import rerank_pb2 as pb

_TRUNCATION: dict[int, Truncation] = {
    pb.TRUNCATION_UNSPECIFIED: Truncation.END,
    pb.TRUNCATION_END: Truncation.END,
    pb.TRUNCATION_NONE: Truncation.NONE,
}


def to_query(
    request: pb.RerankRequest, *, trace: TraceContext, request_id: str, metadata: Mapping[str, str]
) -> RerankQuery:
    return RerankQuery(
        model=request.model,
        query=request.query,
        # dict() of an empty protobuf map still walks Mapping.keys() in Python: skip it when empty
        documents=[Document(d.text, d.id, dict(d.fields) if d.fields else {}) for d in request.documents],
        top_n=request.top_n or None,
        return_documents=request.return_documents,
        rank_fields=tuple(request.rank_fields),
        truncation=_truncation(request.truncation),
        max_tokens_per_doc=request.max_tokens_per_doc or None,
        parameters=_parameters(request),
        trace=trace,
        metadata={**metadata, **request.metadata},
        request_id=request_id,
    )


def _truncation(value: int) -> Truncation:
    """The request's truncation; a value the contract lacks (proto3 enums are open) is refused
    rather than read as the default."""
    try:
        return _TRUNCATION[value]
    except KeyError:
        names = ", ".join(pb.Truncation.Name(known) for known in _TRUNCATION)
        raise errors.invalid("truncation", f"unknown value {value}; one of {names}") from None


def _parameters(request: pb.RerankRequest) -> dict[str, Any]:
    if not request.HasField("parameters"):
        return {}
    try:
        return json_format.MessageToDict(request.parameters)
    except ValueError:  # NaN or Infinity: a Struct can hold them, JSON (and providers) cannot
        raise errors.invalid("parameters", "must be JSON: finite numbers only") from None


def trace_message(trace: TraceContext) -> pb.TraceContext:
    return pb.TraceContext(
        trace_id=trace.trace_id,
        span_id=trace.span_id,
        parent_span_id=trace.parent_span_id,
        span_name=trace.span_name,
        tracestate=trace.tracestate,
    )


def result_messages(
    scores: Sequence[Scored], request: pb.RerankRequest, return_documents: bool
) -> Iterator[pb.RerankResult]:
    """One RerankResult per score, made as they are taken (a stream packs and sends them a slice
    at a time, so a large answer with its documents is never held whole)."""
    for item in scores:
        result = pb.RerankResult(index=item.index, relevance_score=item.score)
        if return_documents:
            result.document.CopyFrom(request.documents[item.index])
        if item.passage is not None:
            _set_passage(result.passage, item.passage)
        yield result


def _set_passage(target: pb.Passage, passage: Passage) -> None:
    target.start = passage.start
    target.end = passage.end
    target.index = passage.index
    target.count = passage.count


def usage_message(usage: Usage) -> pb.Usage:
    return pb.Usage(
        search_units=usage.search_units,
        rerank_units=usage.rerank_units,
        total_tokens=usage.total_tokens,
        documents=usage.documents,
    )


def attempt_messages(attempts: Sequence[Attempt]) -> list[pb.Attempt]:
    return [
        pb.Attempt(
            provider=a.provider,
            model=a.model,
            outcome=a.outcome,
            duration_ms=a.duration_ms,
            attempt=a.attempt,
            message=a.message,
            hedge=a.hedge,
        )
        for a in attempts
    ]


def response_message(
    ranked: Ranked, request: pb.RerankRequest, *, request_id: str, trace: TraceContext
) -> pb.RerankResponse:
    response = pb.RerankResponse(
        id=request_id,
        model=ranked.model,
        provider=ranked.provider,
        usage=usage_message(ranked.usage),
        trace=trace_message(trace),
        attempts=attempt_messages(ranked.attempts),
    )
    add_results(response.results, ranked.results, request, request.return_documents)
    return response


def add_results(
    target: Any, scores: Sequence[Scored], request: pb.RerankRequest, return_documents: bool
) -> None:
    """Append a RerankResult per score to the repeated field `target`, built in place (add() is
    about twice as fast as making messages and copying them in: bench/results/gateway.md)."""
    add = target.add
    if scores and scores[0].passage is not None:  # scored as passages: every result has one
        for item in scores:
            result = add(index=item.index, relevance_score=item.score)
            if return_documents:
                result.document.CopyFrom(request.documents[item.index])
            if item.passage is not None:
                _set_passage(result.passage, item.passage)
    elif return_documents:
        documents = request.documents
        for item in scores:
            add(index=item.index, relevance_score=item.score).document.CopyFrom(documents[item.index])
    else:
        for item in scores:
            add(index=item.index, relevance_score=item.score)


def model_messages(entries: Sequence[ModelEntry]) -> pb.ListModelsResponse:
    models = []
    for entry in entries:
        targets = []
        for target in entry.targets:
            limit = target.provider.capabilities(target.model).max_documents
            described = target.provider.describe(target.model)
            targets.append(
                pb.ModelTarget(
                    provider=target.provider.name,
                    kind=target.provider.kind,
                    model=target.model,
                    weight=target.weight,
                    max_documents=limit or 0,
                    priority=target.priority,
                    family=described.family,
                    max_length=described.max_length,
                    source=described.source,
                )
            )
        models.append(pb.ModelInfo(name=entry.name, alias=entry.alias, targets=targets, match=entry.match))
    return pb.ListModelsResponse(models=models)
