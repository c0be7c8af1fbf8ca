"""Long documents as passages for hosted providers, which cut a long document themselves.

`PassageProvider` wraps every hosted provider (the registry applies it to each kind but `local`,
which splits with its own tokenizer). A call with passages on (`options.passages` of the provider,
or the request's `parameters.passages`, which wins and is never sent to the provider) becomes:

1. each document's text (Document.text, or what `rank_fields` name, rendered as
   `domain.render_text` does) split into overlapping windows: `tokens` tokens each, `stride` of them
   shared by neighbours, at most `limit` a document (rerankd.passages);
2. every window sent to the provider as a document of its own (the exact characters of the
   document, no re-rendering), in calls of at most the provider's documents per call, up to
   `CONCURRENT_CALLS` at once;
3. the windows' scores pooled back per document (max, mean, or first: then only the first window
   is sent), each document's best window named by its character offsets in the text.

Tokens are counted with the bundled model's tokenizer (BERT WordPiece, uncased): hosted models
count their own tokens, so choose `tokens` under the provider's limit less the query, with room to
spare (their tokenizers give up to ~1.5x as many tokens for non-English text). Where rerankd runs
without the bundled model (a hosted-only install), a token is a run of up to 4 non-space
characters.

Usage is what the provider reported for the calls made: it bills the windows sent, so
`documents` (and search units) count windows, not the caller's documents.

With passages configured on the provider, it tells the router it takes any number of documents,
so the router does not split a long list into chunks (which would lose the winning windows) and
the windows are batched here instead; with passages asked for only per request, the router's
chunks are each split and batched here.
"""

from __future__ import annotations

import asyncio
import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from rerankd import errors
from rerankd.domain import Document, Scored, Usage, rendered_texts
from rerankd.errors import BadResponse
from rerankd.passages import PARAMETER, Passages, pool, requested, spans
from rerankd.providers.base import Capabilities, ModelDescription, Provider, ProviderCall, ProviderResult

CONCURRENT_CALLS = 8  # calls in flight for one request's windows (the router's chunk concurrency)
CHARS_PER_TOKEN = 4  # without a tokenizer: a token is a run of up to this many non-space characters
_PIECES = re.compile(rf"\S{{1,{CHARS_PER_TOKEN}}}")
# A WordPiece token is at most 100 characters (a longer word is one [UNK]).
_MAX_CHARS_PER_TOKEN = 100


class Counter(Protocol):
    """Character offsets of a text's tokens."""

    name: str

    def offsets(self, text: str, keep: int) -> Sequence[tuple[int, int]]:
        """Offsets of (at least) the first `keep` tokens of `text`."""


class CharacterCounter:
    """Tokens as runs of up to 4 non-space characters (no tokenizer installed)."""

    name = "characters"

    def offsets(self, text: str, keep: int) -> Sequence[tuple[int, int]]:
        return [match.span() for match in _PIECES.finditer(text, 0, (keep + 1) * _MAX_CHARS_PER_TOKEN)]


class TokenizerCounter:
    """Tokens of a `tokenizers` tokenizer (the bundled model's)."""

    name = "tokenizer"

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer

    def offsets(self, text: str, keep: int) -> Sequence[tuple[int, int]]:
        cap = (keep + 2) * _MAX_CHARS_PER_TOKEN
        found = self.tokenizer.encode(text[:cap], add_special_tokens=False).offsets
        if len(text) > cap and len(found) <= keep:  # long runs of whitespace: the whole text
            found = self.tokenizer.encode(text, add_special_tokens=False).offsets
        return found


@functools.cache
def default_counter() -> Counter:
    """The bundled model's tokenizer when it is installed, else characters (loaded once)."""
    from tokenizers import Tokenizer

    from rerankd.local.files import ModelFilesError, bundled_model_dir

    try:
        path = bundled_model_dir() / "tokenizer.json"
    except ModelFilesError:  # a hosted-only install
        return CharacterCounter()
    if not path.is_file():
        return CharacterCounter()
    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return TokenizerCounter(tokenizer)


@dataclass(frozen=True, slots=True)
class _Window:
    document: int
    start: int
    end: int


class PassageProvider(Provider):
    """A hosted provider that scores long documents as passages when asked (see module)."""

    def __init__(self, inner: Provider, passages: Passages | None, counter: Counter | None = None) -> None:
        super().__init__(inner.name, timeout_s=inner.timeout_s, forward_metadata=inner.forward_metadata)
        self.inner = inner
        self.passages = passages
        self._counter = counter

    @property
    def kind(self) -> str:  # type: ignore[override]  # a class's kind is a constant, a wrapper's its inner's
        return self.inner.kind  # the wrapped provider's, for ListModels, metrics and dialect checks

    def capabilities(self, model: str) -> Capabilities:
        limits = self.inner.capabilities(model)
        return replace(limits, max_documents=None) if self.passages is not None else limits

    def models(self) -> Sequence[str]:
        return self.inner.models()

    def describe(self, model: str) -> ModelDescription:
        return self.inner.describe(model)

    async def start(self) -> None:
        await self.inner.start()

    async def aclose(self) -> None:
        await self.inner.aclose()

    def __repr__(self) -> str:
        return f"PassageProvider({self.inner!r}, passages={self.passages})"

    async def rerank(self, call: ProviderCall) -> ProviderResult:
        if PARAMETER not in call.parameters and self.passages is None:
            return await self.inner.rerank(call)  # the common case: nothing to do
        passages = requested(call.parameters, self.passages)
        if PARAMETER in call.parameters:
            call = replace(call, parameters=_without(call.parameters, PARAMETER))
        if passages is None:
            return await self._batched(call)
        texts = rendered_texts(call.documents, call.rank_fields)
        loop = asyncio.get_running_loop()
        windows = await loop.run_in_executor(None, self.windows, texts, passages, call.max_tokens_per_doc)
        sent = replace(
            call,
            documents=[Document(text=texts[w.document][w.start : w.end]) for w in windows],
            rank_fields=(),
            top_n=None,  # every window's score is needed to pool
            max_tokens_per_doc=None,  # applied here, in the split
        )
        result = await self._batched(sent)
        scores = [0.0] * len(windows)
        for item in result.scores:
            scores[item.index] = item.score
        return ProviderResult(pool(windows, scores, len(texts), passages.pool), result.usage, result.model)

    def windows(self, texts: Sequence[str], passages: Passages, cut: int | None) -> list[_Window]:
        """Each text's windows, in order (blocking: run off the event loop)."""
        counter = self._counter or default_counter()
        keep = passages.most_tokens() if cut is None else min(passages.most_tokens(), cut)
        windows = []
        for index, text in enumerate(texts):
            found = spans(counter.offsets(text, keep), passages, cut)
            if found == [(0, 0)]:
                found = [(0, len(text))]  # no tokens counted: the text as it is
            windows += [_Window(index, start, end) for start, end in found]
        return windows

    async def _batched(self, call: ProviderCall) -> ProviderResult:
        """The provider's scores for every document of `call`, in calls it takes (indices into
        `call.documents`); a call that misses a document is a bad answer (retried, failed over)."""
        limit = self.inner.capabilities(call.model).max_documents
        count = len(call.documents)
        if limit is None or count <= limit:
            result = await self.inner.rerank(call)
            if call.top_n is None:
                _check_every(self.name, result.scores, count)
            return result
        gate = asyncio.Semaphore(CONCURRENT_CALLS)

        async def one(start: int) -> ProviderResult:
            async with gate:
                part = replace(call, documents=call.documents[start : start + limit], top_n=None)
                result = await self.inner.rerank(part)
            _check_every(self.name, result.scores, len(part.documents))
            shifted = [Scored(s.index + start, s.score) for s in result.scores]
            return ProviderResult(shifted, result.usage, result.model)

        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(one(start)) for start in range(0, count, limit)]
        except BaseExceptionGroup as failed:
            raise _first(failed) from None
        usage = Usage()
        scores: list[Scored] = []
        for task in tasks:
            usage.add(task.result().usage)
            scores.extend(task.result().scores)
        return ProviderResult(scores, usage, tasks[0].result().model)


def _without(parameters: Mapping[str, Any], key: str) -> dict[str, Any]:
    return {name: value for name, value in parameters.items() if name != key}


def _check_every(provider: str, scores: Sequence[Scored], count: int) -> None:
    if len({s.index for s in scores}) != count or len(scores) != count:
        raise BadResponse(
            f"{provider}: answer has {len(scores)} scores for the {count} windows sent", provider=provider
        )


def _first(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The first error of the calls that failed (a taxonomy error before anything else)."""
    failed = errors.leaves(group)
    return next((e for e in failed if isinstance(e, errors.RerankError)), failed[0])
