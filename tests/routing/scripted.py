"""An in-memory provider for the routing unit tests: no server, no sockets.

`ScriptedProvider` implements the Provider contract for real: it scores each document by its
position (the first document best), after doing whatever the next step of its script says:
raise an error, wait, or hang until cancelled. It records every call it got and every call that
was cancelled, so tests can see retries, fallbacks, chunks and the losers of a hedge.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rerankd import errors
from rerankd.domain import Passage, Scored, Usage
from rerankd.providers.base import Capabilities, Provider, ProviderCall, ProviderResult


@dataclass(frozen=True)
class Wait:
    """Answer after `seconds` (or then raise `then`)."""

    seconds: float
    then: errors.RerankError | None = None


HANG = Wait(3600.0)
Step = errors.RerankError | Wait | None  # None: answer at once


class ScriptedProvider(Provider):
    kind = "scripted"

    def __init__(
        self,
        name: str,
        script: Sequence[Step] = (),
        *,
        max_documents: int | None = None,
        models: Sequence[str] = ("m",),
        default: Step = None,
        score: Callable[[str], float] = float,
        passages: bool = False,
    ) -> None:
        super().__init__(name)
        self.script: deque[Step] = deque(script)
        self.default = default
        self.score = score
        self.passages = passages  # name a winning window (the document's second half) on each score
        self.max_documents = max_documents
        self._models = tuple(models)
        self.calls: list[ProviderCall] = []
        self.cancelled: list[ProviderCall] = []

    def capabilities(self, model: str) -> Capabilities:
        return Capabilities(max_documents=self.max_documents)

    def models(self) -> Sequence[str]:
        return self._models

    async def rerank(self, call: ProviderCall) -> ProviderResult:
        self.calls.append(call)
        step = self.script.popleft() if self.script else self.default
        if isinstance(step, errors.RerankError):
            raise step
        if isinstance(step, Wait):
            try:
                await asyncio.sleep(step.seconds)
            except asyncio.CancelledError:
                self.cancelled.append(call)
                raise
            if step.then is not None:
                raise step.then
        count = len(call.documents)
        scores = sorted(
            (
                Scored(i, self.score(doc.text), self._passage(doc.text) if self.passages else None)
                for i, doc in enumerate(call.documents)
            ),
            key=lambda s: -s.score,
        )
        if call.top_n is not None:
            scores = scores[: call.top_n]
        return ProviderResult(scores, Usage(search_units=1, documents=count), f"{self.name}-model")

    @staticmethod
    def _passage(text: str) -> Passage:
        return Passage(start=len(text) // 2, end=len(text), index=1, count=2)
