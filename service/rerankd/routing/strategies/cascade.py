"""Cascade: a cheap first stage scores every document, an expensive second stage the best of them.

The route's two targets are the stages, in the order listed (their priority and weight are not
used). The first stage scores every document; the documents it ranks best are passed on: those
scoring at least `min_score` (when set), and of those the first `keep_top` (when set). The second
stage reranks only those, so a 1,000-document request bills a hosted second stage for
`keep_top` documents.

The answer's order: the second stage's ranking of the documents it saw, then every document it
did not see, in first-stage order with their first-stage scores (scores of two models are not
comparable: the order is by stage, then by score within it). `top_n` applies to that final
order, so with `top_n <= keep_top` only second-stage results come back. The answer names the
second stage's provider and model; usage is both stages' summed; the attempts are both stages'.

Progressive streams get the first stage's scores as a `partial` when it has answered, then the
final ranking. When the second stage fails (any error but a caller's), the route answers with
the first stage's ranking if `fallback_to_first_stage` is set, else with the error. A first stage
that fails fails the request (there is nothing to rerank). When no document passes `min_score`
the second stage is not called and the first stage's ranking is the answer.
"""

from __future__ import annotations

from dataclasses import replace

from rerankd import errors
from rerankd.config import CascadeStrategy
from rerankd.domain import Ranked, Scored, Usage
from rerankd.resilience.retry import Disposition, classify
from rerankd.routing.ranking import rank
from rerankd.routing.request import RouteRequest
from rerankd.routing.strategies.base import answer
from rerankd.routing.target_call import TargetCaller


class Cascade:
    """Two-stage reranking on one route."""

    name = "cascade"

    def __init__(self, config: CascadeStrategy) -> None:
        self.config = config

    def passed_on(self, first_ranking: list[Scored]) -> list[Scored]:
        """The first stage's best documents, best first, that the second stage reranks."""
        kept = first_ranking
        if self.config.min_score is not None:
            kept = [s for s in kept if s.score >= self.config.min_score]
        if self.config.keep_top is not None:
            kept = kept[: self.config.keep_top]
        return kept

    async def run(self, request: RouteRequest, caller: TargetCaller) -> Ranked:
        first, second = request.targets[0], request.targets[-1]
        query = request.query
        everything = replace(request, query=replace(query, top_n=None), on_partial=None)
        screened = await caller.serve(first, everything)
        first_ranking = rank(screened.scores, None)
        if request.on_partial is not None:
            request.on_partial(first_ranking)
        kept = self.passed_on(first_ranking)
        if not kept:
            return answer(request, first, screened)
        top_n = query.top_n if query.top_n is not None and query.top_n <= len(kept) else None
        shortlist = replace(query, documents=[query.documents[s.index] for s in kept], top_n=top_n)
        try:
            reranked = await caller.serve(second, replace(request, query=shortlist, on_partial=None))
        except errors.RerankError as exc:
            if not self.config.fallback_to_first_stage or classify(exc) is Disposition.FATAL:
                raise
            return answer(request, first, screened)
        seen = [Scored(kept[s.index].index, s.score, s.passage) for s in rank(reranked.scores, None)]
        seen_indices = {s.index for s in seen}
        order = seen + [s for s in first_ranking if s.index not in seen_indices]
        usage = Usage()
        usage.add(screened.usage)
        usage.add(reranked.usage)
        results = order[: query.top_n] if query.top_n else order
        return Ranked(results, usage, second.provider.name, reranked.model, request.log.attempts)
