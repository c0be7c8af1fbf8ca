"""Scoring a request's documents on one target: in chunks past the target's `max_documents`.

A list longer than the target's `max_documents` is split into chunks scored concurrently (at most
the route's `chunk_concurrency` at once), each a `TargetCall` with its own retries; their scores
are shifted to indices into the whole request and merged. All chunks come from one target, so
their scores come from one model and are comparable. Each finished chunk's scores go to the
request's `on_partial` when the front door passed one (progressive streams). A chunk that fails
fails the whole: the others are cancelled and the caller's own error (FATAL) is preferred.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import TYPE_CHECKING

from rerankd import errors
from rerankd.domain import Scored, Usage
from rerankd.providers.base import ProviderCall, ProviderResult
from rerankd.resilience.retry import Disposition, classify

if TYPE_CHECKING:
    from rerankd.routing.target_call import TargetCall


async def score_documents(target_call: TargetCall) -> ProviderResult:
    """Every document of the request scored on the call's target."""
    target, request = target_call.target, target_call.request
    query = request.query
    max_documents = target.provider.capabilities(target.model).max_documents
    chunked = max_documents is not None and len(query.documents) > max_documents
    call = ProviderCall(
        model=target.model,
        query=query.query,
        documents=query.documents,
        top_n=None if chunked else query.top_n,
        rank_fields=query.rank_fields,
        truncation=query.truncation,
        max_tokens_per_doc=query.max_tokens_per_doc,
        parameters=query.parameters,
        headers=request.headers,
        metadata=query.metadata,
        request_id=query.request_id,
    )
    if max_documents is None or not chunked:
        return await target_call.send_with_retries(call)
    return await _score_chunks(target_call, call, max_documents)


async def _score_chunks(target_call: TargetCall, call: ProviderCall, size: int) -> ProviderResult:
    on_partial = target_call.request.on_partial
    gate = asyncio.Semaphore(target_call.request.chunk_concurrency)
    starts = range(0, len(call.documents), size)
    count = len(starts)

    async def one(number: int, start: int) -> ProviderResult:
        part = replace(call, documents=call.documents[start : start + size])
        async with gate:
            result = await target_call.send_with_retries(part, f"chunk {number}/{count}: ")
        shifted = ProviderResult(
            [Scored(s.index + start, s.score, s.passage) for s in result.scores], result.usage, result.model
        )
        if on_partial is not None:
            on_partial(shifted.scores)
        return shifted

    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(one(n, start)) for n, start in enumerate(starts, 1)]
    except BaseExceptionGroup as group_error:
        raise first_error(group_error) from None
    return merge([task.result() for task in tasks])


def merge(parts: list[ProviderResult]) -> ProviderResult:
    """The chunks' results as one (scores in chunk order, usage summed, the first chunk's model)."""
    usage = Usage()
    scores: list[Scored] = []
    for part in parts:
        usage.add(part.usage)
        scores.extend(part.scores)
    return ProviderResult(scores, usage, parts[0].model)


def first_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The error to report from a failed chunk group: a caller error first, else the first one."""
    failed = errors.leaves(group)
    for leaf in failed:
        if isinstance(leaf, errors.RerankError) and classify(leaf) is Disposition.FATAL:
            return leaf
    return failed[0]
